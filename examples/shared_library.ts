/// <reference path="../types/moat.d.ts" />
// Uses the library "lib/units" (examples/lib_units.ts) through moat.load.
//
//   moat script def add lib/units lib_units.ts "unit conversions"
//   moat script def add weather shared_library.ts "uses lib/units"
//   moat script add weather myhost/weather
moat.setup();

// What the library offers. The type is for the editor only: moat.load
// resolves to the library's moat.exports object, whatever is on it.
interface Units {
  celsius(fahrenheit: number): number;
  fahrenheit(celsius: number): number;
  format(celsius: number): string;
}

// Loading runs the library once per run; loading it again gives the same
// object. A missing library rejects with an error naming it.
const units = await moat.load<Units>("lib/units");

moat.run(() => {
  for (const f of [32, 70, 212]) {
    moat.logger.info(`${f} °F is ${units.format(units.celsius(f))}`);
  }
  moat.logger.info(`body temperature: ${units.fahrenheit(37).toFixed(1)} °F`);
  // Returning from the run function ends the script normally.
});
