// The KPI panel (GET /dashboard/kpis?dimension=city&days=7): today's figures and uPlot time series of
// fulfilment and on-time rate, delivery time p50/p90 and loss rate (intraday points, viewer's time zone).
import uPlot from 'uplot';
import { api } from '../api.js';
import { fmtDuration, fmtNum, fmtPct, t } from '../i18n.js';
import { fill, h, loadInto } from '../ui.js';

const first = (o, ...keys) => { for (const k of keys) if (o && o[k] !== undefined && o[k] !== null) return o[k]; return null; };
const pct = (u, v) => (v === null || v === undefined ? '—' : `${(v * 100).toFixed(1)}%`);
const mins = (u, v) => (v === null || v === undefined ? '—' : `${v.toFixed(0)} min`);

function chart(el, title, xs, series, { yFmt = pct, range } = {}) {
  const width = Math.max(260, el.clientWidth || 320);
  const opts = {
    title, width, height: 170,
    legend: { live: true },
    scales: { x: { time: true }, y: range ? { range } : {} },
    axes: [{ stroke: '#64748b', grid: { stroke: '#e2e8f0' } },
      { stroke: '#64748b', grid: { stroke: '#e2e8f0' }, values: (u, vals) => vals.map((v) => yFmt(u, v)), size: 70 }],
    series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 2, spanGaps: true,
      value: (u, v) => yFmt(u, v), points: { show: xs.length < 16 } }))],
  };
  return new uPlot(opts, [xs, ...series.map((s) => s[2])], el);
}

/** Fills body with the KPI tiles and charts; returns {refresh, dispose}. */
export function kpiPanel(body) {
  let plots = [];
  const dispose = () => { plots.forEach((p) => p.destroy()); plots = []; };
  const refresh = () => loadInto(body, async () => {
    const k = await api('/dashboard/kpis', { query: { dimension: 'city', days: 7 } });
    dispose();
    const cur = k.current;
    const tiles = h('div', { class: 'kpi-tiles' },
      [[t('fulfilment'), fmtPct(first(cur, 'fulfilmentRate', 'fulfilment_rate', 'fulfilment'))],
        [t('onTimeRate'), fmtPct(first(cur, 'onTimeRate', 'on_time_rate'))],
        [`${t('deliveryTime')} p50`, fmtDuration(first(cur, 'deliveryP50Ms', 'delivery_p50_ms'))],
        [`${t('deliveryTime')} p90`, fmtDuration(first(cur, 'deliveryP90Ms', 'delivery_p90_ms'))],
        [t('loss'), fmtPct(first(cur, 'lossRate', 'loss_rate'))],
        [t('orders'), fmtNum(first(cur, 'orders'))]].map(([label, v]) =>
        h('div', { class: 'kpi-tile' }, h('span', { class: 'small muted' }, label), h('strong', {}, v))));
    const series = k.series || [];
    const charts = h('div', { class: 'kpi-charts' });
    fill(body, h('p', { class: 'muted small' }, `${t('today')} · ${k.dimension} ${k.id ?? ''}`), tiles, charts);
    if (!series.length) { charts.append(h('p', { class: 'muted', testid: 'kpi-chart' }, t('noSeries'))); return; }
    const xs = series.map((p) => p.atMs / 1000);
    const col = (f, scale = 1) => series.map((p) => (p[f] === null || p[f] === undefined ? null : p[f] * scale));
    const slots = [0, 1, 2].map((i) => h('div', { class: 'kpi-chart', testid: 'kpi-chart', dataset: { chart: String(i),
      points: series.length } }));
    charts.append(...slots);
    plots = [
      chart(slots[0], `${t('fulfilment')} / ${t('onTimeRate')}`, xs,
        [[t('fulfilment'), '#16a34a', col('fulfilment')], [t('onTimeRate'), '#2563eb', col('onTimeRate')]], { range: [0, 1] }),
      chart(slots[1], t('deliveryTime'), xs, [['p50', '#7c3aed', col('deliveryP50Ms', 1 / 60000)],
        ['p90', '#db2777', col('deliveryP90Ms', 1 / 60000)]], { yFmt: mins }),
      chart(slots[2], t('loss'), xs, [[t('loss'), '#dc2626', col('lossRate')]]),
    ];
  });
  return { refresh, dispose };
}
