// The order funnel panel (GET /dashboard/funnel): the main path CREATED -> ... -> SIGNED and the branches, each
// with its count (equal to `kuailv stats`) and the median / p90 time orders spent in it.
import { api } from '../api.js';
import { fmtDuration, fmtNum, fmtTime, statusName, t } from '../i18n.js';
import { STATUS_COLOURS } from '../map.js';
import { fill, h, loadInto } from '../ui.js';
import { BRANCHES, MAIN_PATH } from './order_parts.js';

function cell(status, counts, stages) {
  const s = stages.get(status);
  return h('div', { class: 'funnel-cell', dataset: { status }, style: `--c:${STATUS_COLOURS[status]}` },
    h('div', { class: 'fname' }, statusName(status)),
    h('div', { class: 'fcount', testid: `funnel-count-${status}`, dataset: { count: counts[status] ?? 0 } },
      fmtNum(counts[status] ?? 0)),
    h('div', { class: 'ftime small', title: s ? `${s.orders} orders left this stage` : '' },
      s && s.medianMs !== null ? `${t('median')} ${fmtDuration(s.medianMs)}` : '\u00a0',
      s && s.p90Ms !== null ? h('span', { class: 'muted' }, ` · ${t('p90')} ${fmtDuration(s.p90Ms)}`) : null));
}

/** Fills `body` with the funnel; returns a refresh function. */
export function funnelPanel(body) {
  return () => loadInto(body, async () => {
    const f = await api('/dashboard/funnel');
    const stages = new Map((f.stages || []).map((s) => [s.stage, s]));
    const main = [];
    MAIN_PATH.forEach((s, i) => {
      if (i) main.push(h('span', { class: 'arrow', 'aria-hidden': 'true' }, '→'));
      main.push(cell(s, f.counts, stages));
    });
    fill(body,
      h('div', { class: 'funnel-label' }, t('mainPath')), h('div', { class: 'funnel main' }, main),
      h('div', { class: 'funnel-label' }, t('branches')),
      h('div', { class: 'funnel branches' }, BRANCHES.map((s) => cell(s, f.counts, stages))),
      h('p', { class: 'muted small' }, `${t('sampled', { n: fmtNum(f.sampled) })} · ${t('asOf', { t: fmtTime(f.asOf) })}`));
  });
}
