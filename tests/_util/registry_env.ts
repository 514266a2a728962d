/**
 * The variables that say how to reach the npm registry (certificates,
 * proxies, a mirror), for tests that run `deno install` with an
 * environment of their own: the install may fetch what the machine's
 * Deno cache lacks, as it would from the user's shell.
 *
 * @module
 */

/** Variables that say how to reach the npm registry. */
const REGISTRY_ENV = [
  "DENO_CERT",
  "DENO_TLS_CA_STORE",
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "HTTPS_PROXY",
  "HTTP_PROXY",
  "NO_PROXY",
  "https_proxy",
  "http_proxy",
  "no_proxy",
  "NPM_CONFIG_REGISTRY",
];

/** Those of the registry variables that this process has, with their values. */
export function registryEnv(): Record<string, string> {
  return Object.fromEntries(REGISTRY_ENV.flatMap((k) => {
    const v = Deno.env.get(k);
    return v === undefined ? [] : [[k, v]];
  }));
}
