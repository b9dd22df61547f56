// The op table's types: every differentiable op, by name, and the attributes its graph node
// records for backward. The interface starts empty and each op family adds its ops where it
// defines them (`declare module '../op-attrs.ts'` in engine/ops/*.ts), so an op is declared in one
// place. The rule table (engine/ops/index.ts) is typed { [P in OpName]: Rule<P> }: an op without a
// backward rule fails to compile. Imports nothing, so tensor.ts can type its nodes by op.
// biome-ignore lint/suspicious/noEmptyInterface: filled by declaration merging in engine/ops/*.ts
export interface OpAttrs {}
export type OpName = keyof OpAttrs;
