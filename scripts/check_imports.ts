/**
 * Keeps imports flowing one way (style.md): `sandbox/` imports nothing from
 * `host/`, `sandbox/protocol.ts` imports nothing at all, the folders of
 * `host/` import each other one way only ({@linkcode FOLDERS_BELOW}), and
 * only the backend files import npm packages. Prints each violation; exits
 * 1 if any.
 *
 * Run: deno run --allow-read scripts/check_imports.ts
 *
 * @module
 */

/**
 * Which files may import which bare npm packages (by import map name); an
 * entry ending with "/" or "_" names every file starting with it (a folder,
 * or a backend's private parts such as `host/store/_etcd_watch.ts`).
 */
export const NPM_ALLOWED: Record<string, string[]> = {
  etcd3: ["host/store/etcd_store.ts", "host/store/_etcd_"],
  amqplib: ["host/bus/amqp_bus.ts", "host/bus/_amqp_"],
  luxon: ["host/time/"],
  "@types/luxon": ["host/time/"],
  typescript: ["host/scripts/check.ts", "host/scripts/typecheck.ts"],
  yaml: ["host/cli/data_file.ts"],
};

/**
 * Folders of `host/` and the folders they must not import, so that no two
 * import each other: the bridge runs scripts and knows nothing of what they
 * may do; the capabilities a script is given (methods, tree view, bus,
 * quotas) use the bridge; the tasks wire runs out of both; the CLI uses all.
 */
export const FOLDERS_BELOW: Record<string, string[]> = {
  "host/bridge/": ["host/capabilities/", "host/tasks/", "host/cli/", "host/testing/"],
  "host/capabilities/": ["host/tasks/", "host/cli/", "host/testing/"],
  "host/tasks/": ["host/cli/", "host/testing/"],
  "host/store/": ["host/testing/"],
  "host/bus/": ["host/testing/"],
  "host/time/": ["host/testing/"],
};

/** The repository path `spec` names, imported from `rel`; undefined when not relative. */
function resolve(rel: string, spec: string): string | undefined {
  if (!spec.startsWith(".")) return undefined;
  const parts = rel.split("/").slice(0, -1);
  for (const seg of spec.split("/")) {
    if (seg === "..") parts.pop();
    else if (seg !== ".") parts.push(seg);
  }
  return parts.join("/");
}

const IMPORT_RE =
  /(?:^|\n)\s*(?:import|export)\b[^'"`;]*?from\s*["']([^"']+)["']|(?:^|\n)\s*import\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** The module specifiers a source text imports. */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT_RE)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) yield* walk(p);
    else if (e.isFile && /\.(ts|js)$/.test(e.name)) yield p;
  }
}

/** Every violation in the tree rooted at `root`, as "file: problem" lines. */
export async function violations(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const top of ["host", "sandbox", "mod.ts", "cli.ts"]) {
    const files: string[] = [];
    try {
      const st = await Deno.stat(`${root}/${top}`);
      if (st.isFile) files.push(`${root}/${top}`);
      else for await (const f of walk(`${root}/${top}`)) files.push(f);
    } catch {
      continue;
    }
    for (const file of files) {
      const rel = file.slice(root.length + 1);
      // Tests may import test helpers, and attack tests hold hostile
      // import statements inside script strings: only product code counts.
      if (/_test\.ts$/.test(rel) || rel.includes("/testdata/")) continue;
      const specs = importsOf(await Deno.readTextFile(file));
      for (const spec of specs) {
        if (rel.startsWith("sandbox/")) {
          if (rel === "sandbox/protocol.ts") {
            out.push(`${rel}: imports "${spec}" (protocol.ts imports nothing)`);
          } else if (!spec.startsWith("./")) {
            out.push(`${rel}: imports "${spec}" (sandbox/ imports only sandbox/)`);
          }
          continue;
        }
        if (spec.startsWith("npm:") || spec.startsWith("jsr:") || spec.startsWith("http")) {
          out.push(`${rel}: imports "${spec}" directly; add it to the import map`);
          continue;
        }
        const target = resolve(rel, spec);
        if (rel.startsWith("host/") && target?.startsWith("tests/")) {
          // Contract suites and test doubles are product code: what they share lives in host/testing/.
          out.push(
            `${rel}: imports "${spec}" (host/ imports nothing from tests/; see host/testing/)`,
          );
          continue;
        }
        const folder = Object.keys(FOLDERS_BELOW).find((f) => rel.startsWith(f));
        // Contract suites are tests that others run: they may use host/testing/.
        const banned = folder && target &&
          FOLDERS_BELOW[folder]!.find((f) =>
            target.startsWith(f) && !(f === "host/testing/" && rel.endsWith("_contract.ts"))
          );
        if (banned) {
          out.push(`${rel}: imports "${spec}" (${folder} must not import ${banned})`);
          continue;
        }
        if (spec.startsWith(".") || spec.startsWith("node:")) continue;
        const allowed = NPM_ALLOWED[spec];
        if (!allowed) out.push(`${rel}: imports unknown package "${spec}"`);
        else if (!allowed.some((a) => rel === a || (/[/_]$/.test(a) && rel.startsWith(a)))) {
          out.push(`${rel}: only ${allowed.join(", ")} may import "${spec}"`);
        }
      }
    }
  }
  return out;
}

if (import.meta.main) {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const v = await violations(root);
  for (const line of v) console.error(line);
  Deno.exit(v.length ? 1 : 0);
}
