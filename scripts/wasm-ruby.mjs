// Runs a Ruby script on CRuby built for WASI (the ruby.wasm npm packages that
// scripts/install-wasm-rubies puts in target/wasm-rubies/), under Node's WASI.
//
//   node scripts/wasm-ruby.mjs VERSION FILE.rb [ARGS...]      (VERSION: 3.2, 3.3, 3.4 or 4.0)
//
// The script sees host files at their own absolute paths: the top-level host directories that
// hold the current directory, the script and any absolute path among ARGS (and the directories
// in $WASM_RUBY_DIRS, colon-separated) are preopened under their own names, so it can write a
// dump into a directory named on its command line, say. (Not "/" itself: Node 20's WASI crashes
// the process in V8's GC with "/" preopened. "/usr" and "/bundle" are the guest's own files, so
// paths there are preopened as their directory only.) The current directory is the caller's.
// The script is compiled as a top-level program (its frames are labelled `<main>`, as under
// `ruby FILE.rb`) with ARGV and $0 set. Its stdout and stderr are the caller's. The exit status
// is `exit`'s, 1 when the script raises (the error is printed as Ruby prints it), else 0.
import { WASI } from "node:wasi";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "target", "wasm-rubies");
const [version, file, ...args] = process.argv.slice(2);
if (!version || !file) {
  console.error("usage: wasm-ruby VERSION FILE.rb [ARGS...]   (VERSION: 3.2, 3.3, 3.4 or 4.0)");
  process.exit(2);
}

const modules = join(root, "node_modules");
const wasmPath = join(modules, "@ruby", `${version}-wasm-wasi`, "dist", "ruby+stdlib.wasm");
let RubyVM, bytes;
try {
  ({ RubyVM } = await import(join(modules, "@ruby", "wasm-wasi", "dist", "esm", "index.js")));
  bytes = await readFile(wasmPath);
} catch (e) {
  console.error(`wasm-ruby: no Ruby ${version} for WASI at ${wasmPath} (${e.code || e.message}); run scripts/install-wasm-rubies`);
  process.exit(2);
}

// The host's Ruby settings would be read by the guest's option parsing: leave them out.
const env = {};
for (const [k, v] of Object.entries(process.env)) {
  if (!/^(RUBYOPT|RUBYLIB|GEM_|BUNDLE_|RUBY_)/.test(k)) env[k] = v;
}
const cwd = process.cwd();
env.PWD = cwd;

const preopens = {};
const share = (path) => {
  const parts = resolve(cwd, path).split("/").filter(Boolean);
  if (parts.length === 0) return;
  const top = ["usr", "bundle"].includes(parts[0]) ? "/" + parts.join("/") : "/" + parts[0];
  preopens[top] = top;
};
share(cwd);
share(dirname(resolve(cwd, file)));
for (const a of args) if (a.startsWith("/")) share(dirname(a));
for (const d of (process.env.WASM_RUBY_DIRS || "").split(":")) if (d) share(d);

const wasi = new WASI({
  version: "preview1",
  args: ["ruby", file, ...args],
  env,
  preopens,
  returnOnExit: true,
});
// Node 20 hands WASI's functions to wasm as V8 fast API calls, and a Ruby calling them
// directly crashes Node now and then (a segfault in V8's GC, more often with "/" preopened).
// Plain JS functions in between take the ordinary call path, which is stable.
const wasiImport = {};
for (const [name, f] of Object.entries(wasi.wasiImport)) wasiImport[name] = (...a) => f(...a);
const wasip1 = { wasiImport, initialize: (instance) => wasi.initialize(instance) };

const module = await WebAssembly.compile(bytes);
const { vm } = await RubyVM.instantiateModule({ module, wasip1 });

// Values reach Ruby as a JSON string literal, which is also a valid Ruby string literal for
// these characters once `#` is escaped (JSON escapes quotes, backslashes and control bytes).
const lit = (s) => JSON.stringify(s).replace(/#/g, "\\#");
const script = resolve(cwd, file);
const status = vm.eval(`
  Dir.chdir(${lit(cwd)})
  ARGV.replace([${args.map(lit).join(", ")}])
  $0 = ${lit(file)}
  status = 0
  begin
    RubyVM::InstructionSequence.compile_file(${lit(script)}).eval
  rescue SystemExit => e
    status = e.status
  rescue Exception => e
    $stderr.print(e.full_message(highlight: false))
    status = 1
  end
  $stdout.flush
  $stderr.flush
  status
`);
process.exitCode = Number(status.toString());
