// Helpers for benchmarks: medians and JSON lines.
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
export function emit(obj: Record<string, unknown>): void {
  console.log(JSON.stringify(obj));
}
export const round = (x: number, d = 3): number => Number(x.toFixed(d));
