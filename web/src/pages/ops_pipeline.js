// The pipeline health panel (GET /dashboard/pipeline, every 5 s): events/s and end offset per input topic,
// consumer lag per worker group, dead letters (total, rate, the newest few) and the open alert count.
import { api } from '../api.js';
import { fmtNum, fmtTime, t } from '../i18n.js';
import { fill, h, loadInto } from '../ui.js';

export function pipelinePanel(body) {
  return () => loadInto(body, async () => {
    const p = await api('/dashboard/pipeline');
    const lag = Object.entries(p.consumerLag || {});
    const dl = p.deadLetters || { total: 0, perSec: 0, recent: [] };
    fill(body, h('div', { class: 'pipeline', dataset: { openAlerts: p.openAlerts, asOf: p.asOf } },
      h('table', { class: 'compact' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('topic')), h('th', { scope: 'col', class: 'num' }, t('eventsPerSec')),
          h('th', { scope: 'col', class: 'num' }, t('endOffset')))),
        h('tbody', {}, (p.topics || []).map((tp) => h('tr', { dataset: { topic: tp.topic } },
          h('td', {}, tp.topic.replace(/^kuailv\./, '')), h('td', { class: 'num' }, fmtNum(tp.eventsPerSec, 1)),
          h('td', { class: 'num' }, fmtNum(tp.endOffset)))))),
      h('div', { class: 'pipe-side' },
        h('h3', {}, t('consumerLag')),
        h('ul', { class: 'plain' }, lag.length ? lag.map(([g, n]) => h('li', { class: n > 1000 ? 'warn' : '' },
          h('code', {}, g), `: ${fmtNum(n)}`)) : h('li', { class: 'muted' }, t('none'))),
        h('h3', {}, t('deadLetters')),
        h('p', { class: dl.total ? 'warn' : '' }, `${t('total')} ${fmtNum(dl.total)} · ${fmtNum(dl.perSec, 2)} ${t('perSec')}`),
        dl.recent?.length ? h('ul', { class: 'plain small dead-letters' }, dl.recent.slice(0, 5).map((r) =>
          h('li', { title: r.reason }, h('code', {}, `${r.topic.replace(/^kuailv\./, '')}[${r.partition}]@${r.offset}`),
            ` ${fmtTime(r.atMs, false)} `, h('span', { class: 'reason' }, r.reason)))) : null,
        h('p', {}, `${t('openAlertsN')}: `, h('strong', {}, fmtNum(p.openAlerts))),
        h('p', { class: 'muted small' }, t('asOf', { t: fmtTime(p.asOf) })))));
  });
}
