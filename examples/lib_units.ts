/// <reference path="../types/moat.d.ts" />
// A library: other scripts load it with `await moat.load("lib/units")` and
// get the functions it puts on moat.exports. Store it like any script:
//
//   moat script def add lib/units lib_units.ts "unit conversions"
//
// A library runs with the loading script's moat. Its moat.setup() may take
// other options than the script's, and a moat.run() in it is ignored.
// Changing it (moat script def update) restarts every task that loaded it.
moat.setup();

/** °F to °C. */
moat.exports.celsius = (fahrenheit: number): number => (fahrenheit - 32) * 5 / 9;

/** °C to °F. */
moat.exports.fahrenheit = (celsius: number): number => celsius * 9 / 5 + 32;

/** A temperature for people: one decimal and the unit. */
moat.exports.format = (celsius: number): string => `${celsius.toFixed(1)} °C`;
