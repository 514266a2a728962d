/**
 * One measured figure of `deno task bench`, printed beside the raw
 * primitive it stands on, measured in the same run.
 *
 * @module
 */

/** A benchmark result line. */
export interface Figure {
  /** Short identifier, e.g. "time_at.median". */
  name: string;
  /** The measured value. */
  value: number;
  /** Unit of `value` and `raw`, e.g. "µs", "ms", "MiB", "/s". */
  unit: string;
  /** Name of the raw primitive, e.g. "luxon fromSeconds+setZone"; "" when none. */
  rawName: string;
  /** The raw primitive's value in the same unit; NaN when none. */
  raw: number;
  /** The target as text, e.g. "ratio <= 50", for the report. */
  target?: string;
}

/** value / raw, or NaN where there is no raw figure. */
export function ratio(f: Figure): number {
  return Number.isFinite(f.raw) && f.raw !== 0 ? f.value / f.raw : NaN;
}

/** The median of a non-empty list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  if (s.length === 0) throw new RangeError("median of an empty list");
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** One report line: `name  value unit  raw-primitive raw unit  ratio  (target)`. */
export function formatFigure(f: Figure): string {
  const r = ratio(f);
  const num = (x: number) =>
    Number.isFinite(x) ? (Math.abs(x) >= 100 ? x.toFixed(1) : x.toFixed(3)) : "-";
  return [
    f.name.padEnd(36),
    num(f.value).padStart(10),
    f.unit.padEnd(4),
    `${f.rawName ? `${f.rawName} ${num(f.raw)} ${f.unit}` : "-"}`.padEnd(52),
    Number.isFinite(r) ? `ratio ${r.toFixed(2)}` : "",
    f.target ? `(target ${f.target})` : "",
  ].join("  ").trimEnd();
}

/** Print figures, one line each (for running a benchmark file alone). */
export function printFigures(figures: Figure[]): void {
  for (const f of figures) console.log(formatFigure(f));
}
