/// <reference path="../types/moat.d.ts" />
// Fails on purpose: the host records the error and retries with back-off.
moat.setup();

moat.run(() => {
  throw new Error("the sensor did not answer");
});
