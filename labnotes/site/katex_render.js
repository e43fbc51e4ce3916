// Render TeX to HTML with KaTeX, for labnotes/site/katex.py (build time, no network).
// usage: node katex_render.js <path to node_modules/katex>   (stdin: JSON list of
// {"tex": "...", "display": true|false}; stdout: JSON list of {"html": "..."} or {"error": "..."})
"use strict";
const katex = require(process.argv[2]);

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const results = JSON.parse(input).map(({ tex, display }) => {
    try {
      return { html: katex.renderToString(tex, { displayMode: display, throwOnError: true, strict: "ignore", output: "htmlAndMathml" }) };
    } catch (error) {
      return { error: String(error.message || error) };
    }
  });
  process.stdout.write(JSON.stringify(results));
});
