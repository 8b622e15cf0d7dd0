// The live city map of the operations page: district outlines, warehouses and depots
// (/dashboard/warehouses), vans (/dashboard/fleet, then `positions` messages; coloured by cold-chain state)
// and order markers (/dashboard/map-orders, coloured by status, with a legend). A click opens the order.
import { api } from '../api.js';
import { fmtNum, t } from '../i18n.js';
import { COLD_CHAIN_COLOURS, createMap, OrderLayer, statusLegend, VanLayer, warehouseMarkers } from '../map.js';
import { errorPanel, h } from '../ui.js';

/** @param {HTMLElement} body @param {{onOpen: (orderId: string) => void}} opts */
export function mapPanel(body, { onOpen }) {
  const mapEl = h('div', { class: 'map ops-map', id: 'ops-map' });
  const notes = h('div', { class: 'map-notes small', 'aria-live': 'polite' });
  const ccLegend = h('div', { class: 'legend' }, h('strong', {}, `${t('vans')} · ${t('coldChain')}:`),
    Object.entries(COLD_CHAIN_COLOURS).map(([k, c]) => h('span', { class: 'legend-item' },
      h('i', { style: `background:${c}` }), t(k))));
  // every order's newest state by default (the day at a glance); the toggle keeps those still under way
  const activeOnly = h('input', { type: 'checkbox', id: 'ops-active-only', testid: 'active-only',
    onchange: () => loadOrders() });
  const toggle = h('label', { class: 'legend-item small', for: 'ops-active-only' }, activeOnly, ' ', t('activeOnly'));
  body.append(mapEl, h('div', { class: 'legends' }, statusLegend(), ccLegend, toggle), notes);
  const { map, dispose } = createMap(mapEl);
  const vans = new VanLayer(map);
  const orders = new OrderLayer(map, { onClick: onOpen });
  const problems = new Map(); // panel part -> error element
  let alive = true; // a request that answers after the page is left must not touch the removed map
  let fitted = false;
  let sites = []; // warehouses and depots: part of the first view // zoom to the orders once, then leave the view to the user

  const note = (part, err) => {
    problems.get(part)?.remove();
    problems.delete(part);
    if (err) {
      const el = err instanceof Element ? err : errorPanel(err);
      el.dataset.part = part; notes.append(el); problems.set(part, el);
    }
  };

  async function loadWarehouses() {
    try {
      const { warehouses } = await api('/dashboard/warehouses');
      if (!alive) return;
      warehouseMarkers(map, warehouses);
      sites = warehouses;
      note('warehouses', null);
    } catch (err) { if (alive) note('warehouses', err); }
  }
  async function loadFleet() {
    try {
      const { drivers } = await api('/dashboard/fleet');
      if (!alive) return;
      drivers.forEach((d) => vans.upsert(d));
      mapEl.dataset.vans = String(vans.size);
      note('fleet', null);
    } catch (err) { if (alive) note('fleet', err); }
  }
  async function loadOrders() {
    try {
      const res = await api('/dashboard/map-orders', { query: { active: activeOnly.checked } });
      if (!alive) return;
      orders.replace(res.orders);
      if (!fitted && res.orders.length > 1) { fitted = true; orders.fit(sites); }
      mapEl.dataset.orders = String(res.orders.length);
      note('orders', null);
      note('truncated', res.truncated ? h('p', { class: 'muted' },
        t('truncated', { n: fmtNum(res.orders.length), total: fmtNum(res.total) })) : null);
    } catch (err) { if (alive) note('orders', err); }
  }

  return {
    load: async () => { await loadWarehouses(); await Promise.all([loadFleet(), loadOrders()]); }, // sites first: the first view fits them
    refresh: () => Promise.all([loadFleet(), loadOrders()]),
    reloadFleet: loadFleet,
    /** `positions` messages move the vans (newest event time wins). */
    positions: (ps) => { if (!alive) return; ps.forEach((p) => vans.upsert(p)); mapEl.dataset.vans = String(vans.size); },
    dispose: () => { alive = false; dispose(); },
  };
}
