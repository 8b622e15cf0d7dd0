// #/ops (operator, customer service): the live city map, the order funnel, the open alerts feed, KPI charts and
// the pipeline's health. One live subscription ({"alerts": true} + {"fleet": true}); the funnel and the
// pipeline refresh every 5 s, the map's orders and the fleet's cold-chain state every 15 s, KPIs every minute.
import { t } from '../i18n.js';
import { follow } from '../live.js';
import { card, errorPanel, every, fill, h } from '../ui.js';
import { alertsPanel } from './ops_alerts.js';
import { funnelPanel } from './ops_funnel.js';
import { kpiPanel } from './ops_kpis.js';
import { mapPanel } from './ops_map.js';
import { pipelinePanel } from './ops_pipeline.js';

export const name = 'ops';
export const title = () => t('ops');

export function mount(root) {
  const open = (orderId) => { location.hash = `#/orders/${encodeURIComponent(orderId)}`; };
  const [mapCard, mapBody] = card(t('cityMap'), { cls: 'area-map' });
  const [funnelCard, funnelBody] = card(t('funnel'), { cls: 'area-funnel', testid: 'funnel' });
  const [alertsCard, alertsBody] = card(t('alerts'), { cls: 'area-alerts', testid: 'alerts' });
  const [kpiCard, kpiBody] = card(t('kpis'), { cls: 'area-kpis', testid: 'kpis' });
  const [pipeCard, pipeBody] = card(t('pipeline'), { cls: 'area-pipeline', testid: 'pipeline-health' });
  const grid = h('div', { class: 'ops-grid' }, mapCard, funnelCard, alertsCard, kpiCard, pipeCard);
  root.append(grid);
  const stops = [];
  let stopped = false;

  const alerts = alertsPanel(alertsBody, { onOpen: open });
  // GET /alerts is the gate: a viewer who may not read every alert sees the refusal, not half a dashboard.
  alerts.load().then(start, (err) => {
    if (err.status === 403 || err.status === 401) fill(root, errorPanel(err));
    else { fill(alertsBody, errorPanel(err)); start(); }
  });

  function start() {
    if (stopped) return;
    const map = mapPanel(mapBody, { onOpen: open });
    const funnel = funnelPanel(funnelBody);
    const kpis = kpiPanel(kpiBody);
    const pipeline = pipelinePanel(pipeBody);
    map.load(); funnel(); kpis.refresh(); pipeline();
    let resizing = null;
    const onResize = () => { clearTimeout(resizing); resizing = setTimeout(kpis.refresh, 300); }; // charts have a fixed width
    window.addEventListener('resize', onResize);
    stops.push(() => window.removeEventListener('resize', onResize), map.dispose, kpis.dispose, every(5000, funnel), every(5000, pipeline), every(15000, map.refresh),
      every(60000, kpis.refresh));
    stops.push(follow([{ alerts: true }, { fleet: true }], {
      onChange: (c) => {
        if (c.kind !== 'alert') return;
        alerts.apply(c.data);
        if (/^cold-chain/.test(c.data?.rule_id || '')) map.reloadFleet(); // a van's colour follows its alerts
      },
      onPositions: map.positions,
      onReset: () => { map.reloadFleet(); alerts.load().catch((err) => fill(alertsBody, errorPanel(err))); },
      onReconnected: map.reloadFleet, // positions are not in the resume cursor: read the fleet again
    }));
  }
  return () => { stopped = true; stops.forEach((s) => s()); };
}
