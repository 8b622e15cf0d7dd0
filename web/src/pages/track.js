// #/track/<orderId> (customer / merchant, phone-first): the order's map track and live van position, ETA,
// "arriving soon", and the e-signature: the signature record once signed, else "Confirm receipt".
import { api, enc } from '../api.js';
import { t } from '../i18n.js';
import { createMap, destinationMarker, trackLayer, VanLayer } from '../map.js';
import { errorPanel, every, fill, h } from '../ui.js';
import { signForm } from './forms.js';
import { orderFeed } from './order.js';
import { ACTIVE_DELIVERY, etaBox, progress, signatureBox, statusBadge } from './order_parts.js';

export const name = 'track';
export const title = () => t('track');

export function mount(root, orderId) {
  const head = h('div', { class: 'track-head' });
  const mapEl = h('div', { class: 'map track-map', id: 'track-map' });
  const etaEl = h('div', { class: 'track-eta' });
  const sigEl = h('section', { class: 'card track-sign' });
  root.append(head, etaEl, mapEl, sigEl);
  const { map, dispose } = createMap(mapEl, { zoom: 12, labels: false });
  const vans = new VanLayer(map);
  let driverId = null; let tracked = false; let signedShown = null; let alive = true;

  const loadTrack = async (order) => {
    if (!alive) return; // an answer that comes after the page was left must not touch its removed map
    if (order.destination) destinationMarker(map, order.destination);
    try {
      const tr = await api(`/orders/${enc(orderId)}/track`, { query: { limit: 500 } });
      if (!alive) return;
      if (tr.points.length) trackLayer(map, tr.points, [order.destination, order.driverInfo?.location]);
      else if (order.destination) map.setView([order.destination.lat, order.destination.lng], 13, { animate: false });
    } catch (err) {
      if (!alive) return;
      mapEl.after(errorPanel(err));
      if (order.destination) map.setView([order.destination.lat, order.destination.lng], 13, { animate: false });
    }
  };

  const renderSign = (order) => {
    const signed = Boolean(order.signature);
    if (signedShown === signed && sigEl.childElementCount) return; // keep a half-drawn signature
    signedShown = signed;
    if (signed) { fill(sigEl, h('h2', {}, t('signature')), signatureBox(order)); return; }
    if (order.status === 'DELIVERING') {
      fill(sigEl, signForm(order, { mode: 'customer', onDone: () => setTimeout(() => feed.reload(), 800) }));
    } else fill(sigEl, h('h2', {}, t('signature')), signatureBox(order));
  };

  const render = (order) => {
    if (!alive) return;
    driverId = order.driverInfo?.driverId || null;
    fill(head, h('h1', {}, order.orderId), statusBadge(order.status, 'order-status'), progress(order));
    fill(etaEl, etaBox(order));
    const loc = order.driverInfo?.location;
    if (alive && loc && ACTIVE_DELIVERY.has(order.status)) {
      vans.upsert({ driverId, vehicleId: order.driverInfo.vehicleId, lat: loc.lat, lng: loc.lng,
        atMs: loc.at ? Date.parse(loc.at) : undefined });
    }
    renderSign(order);
    if (!tracked) { tracked = true; loadTrack(order); }
  };

  const feed = orderFeed(orderId, {
    render,
    fail: (err) => fill(root, errorPanel(err, { notFound: t('orderMissing', { id: orderId }) })),
    onPositions: (ps) => alive && ACTIVE_DELIVERY.has(feed.get()?.status) && ps.filter((p) => p.driverId === driverId).forEach((p) => vans.upsert(p)),
  });
  const tick = every(30000, () => { const o = feed.get(); if (o) fill(etaEl, etaBox(o)); });
  return () => { alive = false; feed.stop(); tick(); dispose(); };
}
