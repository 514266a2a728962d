/**
 * Calendar arithmetic on day numbers (days since 1970-01-01, proleptic
 * Gregorian): civil dates, weekdays and ISO weeks, without `Date`.
 *
 * @module
 */

/** Seconds in a day. */
export const DAY = 86_400;

/** Day number of a civil date (Howard Hinnant's algorithm). */
export function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const mp = (m + 9) % 12;
  const doy = Math.floor((153 * mp + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/** Civil date `[year, month, day]` of a day number. */
export function civilFromDays(z: number): [number, number, number] {
  const zz = z + 719_468;
  const era = Math.floor(zz / 146_097);
  const doe = zz - era * 146_097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) -
      Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

/** Whether `y` is a leap year. */
export function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

/** Days of each month (1–12) in a common year. */
export const MONTH_DAYS = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Days in month `m` (1–12) of year `y`. */
export function daysInMonth(y: number, m: number): number {
  return m === 2 && isLeap(y) ? 29 : MONTH_DAYS[m]!;
}

/** ISO weekday of a day number: 1 = Monday … 7 = Sunday. */
export function weekdayOfDays(z: number): number {
  return ((((z + 3) % 7) + 7) % 7) + 1;
}

/** Day number of the Monday starting ISO week 1 of ISO year `y`. */
/** The day number of the Monday that starts ISO year `y`. */
export function isoYearStart(y: number): number {
  const jan4 = daysFromCivil(y, 1, 4);
  return jan4 - (weekdayOfDays(jan4) - 1);
}

/** Number of ISO weeks (52 or 53) in ISO year `y`. */
/** How many ISO weeks year `y` has (52 or 53). */
export function isoWeeksIn(y: number): number {
  return (isoYearStart(y + 1) - isoYearStart(y)) / 7;
}

/** `[isoYear, isoWeek]` of a day number. */
export function isoWeekOfDays(z: number): [number, number] {
  const thursday = z - (weekdayOfDays(z) - 1) + 3;
  const y = civilFromDays(thursday)[0];
  return [y, Math.floor((thursday - isoYearStart(y)) / 7) + 1];
}
