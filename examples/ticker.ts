/// <reference path="../types/moat.d.ts" />
// Waits three times for the next full second with moat.wait, then ends.
moat.setup();

moat.on_stop(() => moat.logger.info("ticker stopped"));

moat.run(async () => {
  let t = await moat.time_at([], { current: true });
  for (let i = 1; i <= 3; i++) {
    t = await moat.wait({ now: Math.floor(t) + 1 });
    moat.logger.info(`tick ${i} at ${new Date(t * 1000).toISOString()}`);
  }
  moat.end();
});
