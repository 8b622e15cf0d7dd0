// The viewer's token: taken from the URL fragment (/ui/#token=<JWT>, which never reaches a server log) into
// sessionStorage, or pasted on #/login. The payload is decoded here ONLY to choose a landing page and to
// fill the viewer's own ids into the URLs; the service checks the signature and decides every access.

const KEY = 'kuailv.token';

/**
 * Moves a `#token=<JWT>[&next=/orders/KL1]` fragment into sessionStorage and removes it from the URL.
 * @returns {string|null} null when there was no token; else the route to open (`#/...`, '' for the landing page)
 */
export function takeTokenFromFragment() {
  const m = /(?:^#|[#&])token=([^&]+)/.exec(location.hash);
  if (!m) return null;
  setToken(decodeURIComponent(m[1]));
  const next = /[#&]next=([^&]+)/.exec(location.hash);
  history.replaceState(null, '', `${location.pathname}${location.search}#/`);
  const route = next ? decodeURIComponent(next[1]).replace(/^#?\/?/, '#/') : '';
  return /^#\/[\w/.-]*$/.test(route) ? route : '';
}

export const getToken = () => sessionStorage.getItem(KEY);
export const setToken = (token) => sessionStorage.setItem(KEY, token.trim());
export const clearToken = () => sessionStorage.removeItem(KEY);

/**
 * @typedef {{sub: string, role: string, exp?: number, customer_id?: string, driver_id?: string,
 *            warehouse_id?: string}} Claims
 * @returns {Claims|null} the unverified payload, or null when the token is not a JWT
 */
export function claims(token = getToken()) {
  if (!token) return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = new TextDecoder().decode(Uint8Array.from(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)),
      (c) => c.charCodeAt(0)));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

/** The viewer's tenant id (customer, driver or warehouse), if the role has one. */
export function tenant(c = claims()) {
  return c ? (c.customer_id || c.driver_id || c.warehouse_id || null) : null;
}

/** Where a role starts. */
export function landing(c = claims()) {
  switch (c?.role) {
    case 'operator': case 'customer_service': return '#/ops';
    case 'merchant': case 'customer': return '#/merchant';
    case 'driver': return '#/driver';
    case 'warehouse_staff': return '#/warehouse';
    default: return '#/login';
  }
}

export const isStaff = (c = claims()) => c?.role === 'operator' || c?.role === 'customer_service';
