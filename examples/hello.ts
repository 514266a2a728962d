/// <reference path="../types/moat.d.ts" />
// The smallest useful script: set up, say hello when started, end.
moat.setup();

moat.on_start(() => {
  moat.logger.info("hello from a sandboxed script");
});

moat.run(() => {
  moat.end();
});
