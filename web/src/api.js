// The service's REST API with the viewer's bearer token. Every failure becomes an ApiError naming the
// endpoint, the HTTP status and the API's `detail`, so a page can say exactly what failed.
import { getToken } from './auth.js';

export class ApiError extends Error {
  /** @param {string} method @param {string} path @param {number} status 0: no answer @param {string} detail */
  constructor(method, path, status, detail) {
    super(`${method} ${path}: ${status || 'no answer'} ${detail}`);
    this.method = method; this.path = path; this.status = status; this.detail = detail;
  }
}

/** FastAPI's detail: a text, a list of invalid fields (422), or an object. */
function detailText(detail) {
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join('.')}: ${d.msg}`).join('; ');
  return JSON.stringify(detail);
}

/**
 * @param {string} path e.g. "/orders/KL1"
 * @param {{method?: string, body?: any, query?: Record<string, any>}} [opts]
 */
export async function api(path, { method = 'GET', body, query } = {}) {
  const qs = query ? new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null
    && v !== '').map(([k, v]) => [k, String(v)])).toString() : '';
  const url = qs ? `${path}?${qs}` : path;
  const headers = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(method, path, 0, `the service did not answer (${err.message})`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const detail = data && data.detail !== undefined ? detailText(data.detail) : (text.slice(0, 200) || res.statusText);
    throw new ApiError(method, path, res.status, detail);
  }
  return data;
}

export const enc = encodeURIComponent;
