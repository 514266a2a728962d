/**
 * Certificates for tests, made with `openssl` in a directory: a CA, server
 * certificates for 127.0.0.1 and localhost, client certificates with a
 * given common name, and a second CA that trusts none of them.
 *
 * @module
 */

/** Run openssl with `args` in `dir`; throws with its stderr when it fails. */
async function openssl(dir: string, args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `openssl ${args.join(" ")} failed (code ${out.code}): ${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
}

/** A certificate and its key, as file paths. */
export interface CertFiles {
  cert: string;
  key: string;
}

/** Certificates in one directory. */
export interface TestCerts {
  /** The directory holding every file. */
  dir: string;
  /** The CA certificate that signed everything below. */
  ca: string;
  /** A CA certificate that signed nothing here (the wrong CA). */
  otherCa: string;
  /** The server certificate: SAN IP 127.0.0.1 and DNS localhost. */
  server: CertFiles;
  /** A client certificate with common name `cn`, signed by `ca` (made on demand). */
  client(cn: string): Promise<CertFiles>;
  /** A client certificate with common name `cn`, signed by the other CA. */
  foreignClient(cn: string): Promise<CertFiles>;
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(dir, [
    "req",
    "-x509",
    ...EC,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
  ]);
}

async function sign(dir: string, ca: string, name: string, cn: string, ext: string) {
  await Deno.writeTextFile(`${dir}/${name}.ext`, ext);
  await openssl(dir, [
    "req",
    ...EC,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    `/CN=${cn}`,
  ]);
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.crt`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-extfile",
    `${name}.ext`,
  ]);
  return { cert: `${dir}/${name}.crt`, key: `${dir}/${name}.key` };
}

/** Make a CA, a server certificate and a second CA in `dir` (2 days valid). */
export async function makeCerts(dir: string): Promise<TestCerts> {
  await makeCa(dir, "ca");
  await makeCa(dir, "other-ca");
  const server = await sign(
    dir,
    "ca",
    "server",
    "localhost",
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  const file = (cn: string) => cn.replace(/[^A-Za-z0-9_.-]/g, "_");
  return {
    dir,
    ca: `${dir}/ca.crt`,
    otherCa: `${dir}/other-ca.crt`,
    server,
    client: (cn) => sign(dir, "ca", `client-${file(cn)}`, cn, "extendedKeyUsage=clientAuth\n"),
    foreignClient: (cn) =>
      sign(dir, "other-ca", `foreign-${file(cn)}`, cn, "extendedKeyUsage=clientAuth\n"),
  };
}
