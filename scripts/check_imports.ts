/**
 * Keeps imports flowing one way (style.md): `sandbox/` imports nothing from
 * `host/`, `sandbox/protocol.ts` imports nothing at all, and only the
 * backend files import npm packages. Prints each violation; exits 1 if any.
 *
 * Run: deno run --allow-read scripts/check_imports.ts
 *
 * @module
 */

/** Which files may import which bare npm packages (by import map name). */
export const NPM_ALLOWED: Record<string, string[]> = {
  etcd3: ["host/store/etcd_store.ts"],
  amqplib: ["host/bus/amqp_bus.ts"],
  luxon: ["host/time/"],
  "@types/luxon": ["host/time/"],
  typescript: ["host/scripts/check.ts", "host/scripts/typecheck.ts"],
  yaml: ["host/cli/data_file.ts"],
};

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
        if (spec.startsWith(".") || spec.startsWith("node:")) continue;
        const allowed = NPM_ALLOWED[spec];
        if (!allowed) out.push(`${rel}: imports unknown package "${spec}"`);
        else if (!allowed.some((a) => rel === a || (a.endsWith("/") && rel.startsWith(a)))) {
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
