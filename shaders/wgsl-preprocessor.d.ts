declare module 'wgsl-preprocessor/wgsl-preprocessor.js' {
  /** Template tag with #if / #elif / #else / #endif for compile-time shader variants. */
  export function wgsl(strings: TemplateStringsArray, ...values: unknown[]): string;
}
