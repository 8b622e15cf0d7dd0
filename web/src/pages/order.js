// #/orders/<id>: the seed's scenario 1 for a person: status, timeline with stage times and durations, lines
// (ordered / picked / weighed / delivered), the van's track and live position, ETA and "arriving soon",
// late risk, open alerts, signature record. Live via {"order": id}.
import { api, enc } from '../api.js';
import { fmtNum, fmtTime, reasonName, t } from '../i18n.js';
import { follow } from '../live.js';
import { createMap, destinationMarker, trackLayer, VanLayer } from '../map.js';
import { card, errorPanel, every, fill, h } from '../ui.js';
import { ACTIVE_DELIVERY, alertItem, etaBox, linesTable, signatureBox, statusBadge, timeline } from './order_parts.js';

export const name = 'order';
export const title = () => t('order');

/** Loads an order and keeps it fresh: live changes are applied at once and re-read over REST shortly after
 * (the REST answer carries the merges: GPS ETA, open alerts). Shared with the track page. */
export function orderFeed(orderId, { render, fail, onPositions, onAlert }) {
  let current = null; let timer = null; let stopped = false; // no callback once the page is left
  const load = async () => {
    try {
      const answer = await api(`/orders/${enc(orderId)}`);
      if (stopped) return;
      current = answer;
      render(current);
    } catch (err) {
      if (stopped) return;
      if (current && ![401, 403, 404].includes(err.status)) console.warn('order refresh failed', err.message);
      else fail(err); // nothing to show, or the order is gone / no longer ours
    }
  };
  const soon = () => { clearTimeout(timer); timer = setTimeout(load, 1200); };
  const stop = follow([{ order: orderId }], {
    onChange: (c) => {
      if (c.orderId !== orderId || !current) return;
      if (c.kind === 'order' && c.data?.version >= current.version) {
        current = { ...current, ...c.data, eta: current.eta, etaSource: current.etaSource, lateRisk: current.lateRisk,
          stages: { ...current.stages, ...c.data.stages } };
        render(current);
      } else if (c.kind === 'eta' && c.data) {
        current = { ...current, eta: new Date(c.data.eta).toISOString(), lateRisk: c.data.late_risk ?? current.lateRisk };
        render(current);
      } else if (c.kind === 'alert') onAlert?.(c.data);
      soon();
    },
    onPositions,
    onReset: load,
    onReconnected: load,
  });
  load();
  return { stop: () => { stopped = true; stop(); clearTimeout(timer); }, reload: load, get: () => current };
}

export function mount(root, orderId) {
  const head = h('div', { class: 'order-head' });
  const [etaCard, etaBody] = card(t('eta'));
  const [tlCard, tlBody] = card(t('timeline'));
  const [linesCard, linesBody] = card(t('lines'));
  const [mapCard, mapBody] = card(t('track'), { cls: 'map-card' });
  const [alertsCard, alertsBody] = card(t('orderAlerts'));
  const [sigCard, sigBody] = card(t('signature'));
  const grid = h('div', { class: 'order-grid' }, etaCard, mapCard, tlCard, linesCard, alertsCard, sigCard);
  root.append(head, grid);
  const mapEl = h('div', { class: 'map', id: 'order-map' });
  mapBody.append(mapEl, h('p', { class: 'muted small track-note' }));
  const { map, dispose } = createMap(mapEl, { zoom: 11 });
  const vans = new VanLayer(map);
  let trackDrawn = false; let dest = null; let driverId = null; let alive = true;

  const loadAlerts = async () => {
    try {
      const { alerts } = await api(`/orders/${enc(orderId)}/alerts`);
      fill(alertsBody, alerts.length ? h('ul', { class: 'alerts' }, alerts.map((a) => alertItem(a)))
        : h('p', { class: 'muted' }, t('none')));
    } catch (err) { fill(alertsBody, errorPanel(err)); }
  };

  const loadTrack = async (order) => {
    const note = mapBody.querySelector('.track-note');
    try {
      const tr = await api(`/orders/${enc(orderId)}/track`, { query: { limit: 1000 } });
      if (!alive) return;
      if (tr.points.length) { trackLayer(map, tr.points, [order.destination]); trackDrawn = true; }
      note.textContent = tr.points.length ? `${tr.total} GPS · ${fmtTime(tr.from)} – ${fmtTime(tr.to)}` : t('noTrack');
    } catch (err) {
      fill(note, errorPanel(err));
    }
    if (alive && order.destination && !dest) {
      dest = destinationMarker(map, order.destination);
      if (!trackDrawn) map.setView([order.destination.lat, order.destination.lng], 12, { animate: false });
    }
  };

  const render = (order) => {
    if (!alive) return; // an answer that comes after the page was left
    driverId = order.driverInfo?.driverId || null;
    const d = order.driverInfo;
    fill(head, h('h1', {}, `${t('order')} ${order.orderId}`), statusBadge(order.status, 'order-status'),
      h('dl', { class: 'facts' },
        h('dt', {}, t('customer')), h('dd', {}, order.customerId),
        h('dt', {}, t('warehouse')), h('dd', {}, order.warehouseId),
        d ? [h('dt', {}, t('driverLbl')), h('dd', {}, `${d.name ?? '—'} · ${d.driverId}${d.phone ? ` · ${d.phone}` : ''}`),
          h('dt', {}, t('vehicle')), h('dd', {}, `${d.vehiclePlate} (${d.vehicleId})`)] : null,
        h('dt', {}, t('total2')), h('dd', {}, `¥${fmtNum(order.totalCents / 100, 2)}`)),
      order.exception ? h('p', { class: 'exception' }, `${t('exception')}: ${reasonName(order.exception.reasonCode)}`
        + ` · ${order.exception.description} · ${fmtTime(order.exception.at)}`) : null);
    fill(etaBody, etaBox(order));
    fill(tlBody, timeline(order));
    fill(linesBody, linesTable(order));
    fill(sigBody, signatureBox(order));
    if (alive && d?.location && ACTIVE_DELIVERY.has(order.status)) vans.upsert({ driverId: d.driverId, vehicleId: d.vehicleId, lat: d.location.lat, lng: d.location.lng,
      atMs: d.location.at ? Date.parse(d.location.at) : undefined });
  };

  let first = true;
  const feed = orderFeed(orderId, {
    render: (order) => {
      render(order);
      if (first) { first = false; loadTrack(order); loadAlerts(); }
    },
    fail: (err) => fill(root, errorPanel(err, { notFound: t('orderMissing', { id: orderId }) })),
    onPositions: (ps) => alive && ACTIVE_DELIVERY.has(feed.get()?.status) && ps.filter((p) => p.driverId === driverId).forEach((p) => vans.upsert(p)),
    onAlert: () => loadAlerts(),
  });
  const tick = every(30000, () => { const o = feed.get(); if (o) fill(etaBody, etaBox(o)); }); // "arriving soon" ages
  return () => { alive = false; feed.stop(); tick(); dispose(); };
}
