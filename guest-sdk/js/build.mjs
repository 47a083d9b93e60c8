#!/usr/bin/env node
// Builds a JavaScript block into a component: `node build.mjs app.js -o app.wasm [--wit DIR]`.
//
// It copies the block's directory to a scratch directory with this SDK beside it (`bagpipe.js`,
// `bagpipe-glue.js`), loads the block's module in Node.js to read which hooks its class defines,
// writes a world that includes the project's `block` world and exports only those hook
// interfaces (plus `batch-hook`, as every SDK does), and runs ComponentizeJS against it.

import { cp, mkdtemp, mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { existsSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const SDK = dirname(fileURLToPath(import.meta.url));
const DEFAULT_WIT = resolve(SDK, "..", "..", "wit");
const WORLD = "js-block";

function usage(message) {
  if (message) console.error(`error: ${message}`);
  console.error("usage: node build.mjs APP.js [-o OUT.wasm] [--wit DIR]");
  process.exit(2);
}

function parse(argv) {
  const args = { app: null, out: null, wit: DEFAULT_WIT };
  const value = (i, option) => {
    if (i >= argv.length) usage(`${option} needs a value`);
    return argv[i];
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-o" || a === "--output") args.out = value(++i, a);
    else if (a === "--wit") args.wit = value(++i, a);
    else if (a.startsWith("-")) usage(`unknown option ${a}`);
    else if (args.app === null) args.app = a;
    else usage(`unexpected ${a}`);
  }
  if (!args.app) usage("no block module given");
  args.app = resolve(args.app);
  args.out = resolve(args.out ?? args.app.replace(/\.m?js$/, "") + ".wasm");
  args.wit = resolve(args.wit);
  return args;
}

// ComponentizeJS from `$BAGPIPE_JS_MODULES/node_modules` (where build-block installs it), else
// from beside this file. It is an ES module only, which NODE_PATH does not reach.
async function componentizeJs() {
  const base = process.env.BAGPIPE_JS_MODULES ?? SDK;
  const pkg = join(base, "node_modules", "@bytecodealliance", "componentize-js");
  if (!existsSync(join(pkg, "package.json"))) {
    throw new Error(`ComponentizeJS is not installed in ${base}: run guest-sdk/build-block, or npm ci in guest-sdk/js`);
  }
  const manifest = JSON.parse(await readFile(join(pkg, "package.json"), "utf8"));
  return import(pathToFileURL(join(pkg, manifest.exports.import)).href);
}

function world(interfaces) {
  const exports = interfaces.map((i) => `    export ${i};\n`).join("");
  return `package bagpipe:block@0.1.0;\n\nworld ${WORLD} {\n    include block;\n${exports}}\n`;
}

// JS export names of the interfaces (`enqueue-hook` -> `enqueueHook`).
const camel = (s) => s.replace(/-([a-z])/g, (_, c) => c.toUpperCase());

async function main() {
  const args = parse(process.argv.slice(2));
  if (!existsSync(args.app) || !statSync(args.app).isFile()) usage(`\`${args.app}\` is not a file`);
  if (!existsSync(join(args.wit, "block.wit"))) usage(`\`${args.wit}\` holds no block.wit: pass the project's wit directory with --wit`);

  const scratch = await mkdtemp(join(tmpdir(), "bagpipe-js-"));
  try {
    const src = join(scratch, "src");
    const appDir = dirname(args.app);
    await cp(appDir, src, {
      recursive: true,
      // Judged on the path inside the block's directory: where that directory lives is no matter.
      filter: (p) => !/(^|\/)(node_modules|target|\.git)(\/|$)/.test(relative(appDir, p)) && !p.endsWith(".wasm"),
    });
    await cp(join(SDK, "bagpipe.js"), join(src, "bagpipe.js"));
    await cp(join(SDK, "glue.js"), join(src, "bagpipe-glue.js"));

    const sdk = await import(pathToFileURL(join(src, "bagpipe.js")).href);
    const appModule = join(src, basename(args.app));
    let cls;
    try {
      cls = (await import(pathToFileURL(appModule).href)).default;
    } catch (e) {
      throw new Error(`loading \`${args.app}\` failed: ${e.stack ?? e}`);
    }
    if (typeof cls !== "function" || !(cls.prototype instanceof sdk.Block)) {
      throw new Error(`\`${args.app}\` must default-export a class that extends Block (from "./bagpipe.js")`);
    }
    const interfaces = sdk.interfaces(cls);

    const wit = join(scratch, "wit");
    await mkdir(wit);
    for (const f of await readdir(args.wit)) if (f.endsWith(".wit")) await cp(join(args.wit, f), join(wit, f));
    await writeFile(join(wit, "bagpipe-js-world.wit"), world(interfaces));

    const names = ["lifecycle", ...interfaces].map(camel);
    const entry = join(src, "bagpipe-entry.js");
    await writeFile(entry,
      `import Block from "./${basename(args.app)}";\n` +
      `import { bind } from "./bagpipe-glue.js";\n` +
      `bind(Block);\n` +
      `export { ${names.join(", ")} } from "./bagpipe-glue.js";\n`);

    const { componentize } = await componentizeJs();
    process.chdir(src);
    const { component } = await componentize({
      sourcePath: entry,
      witPath: wit,
      worldName: WORLD,
      // The host offers WASI's CLI, clocks, random and I/O, not wasi:http.
      disableFeatures: ["http", "fetch-event"],
    });
    await mkdir(dirname(args.out), { recursive: true });
    // A watching host sees the whole new file at once, never a half-written one.
    const partial = join(dirname(args.out), `.${basename(args.out)}.${process.pid}.${Date.now()}.partial`);
    await writeFile(partial, component);
    await rename(partial, args.out);
    console.log(`built ${args.out} (exports lifecycle, ${interfaces.join(", ")})`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`error: ${e.message ?? e}`);
  process.exit(1);
});
