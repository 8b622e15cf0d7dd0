// Every label in English and Simplified Chinese, the language toggle (kept in localStorage, default from
// navigator.language), and time formatting in the viewer's time zone (Intl).

/** key -> [English, 简体中文] */
const D = {
  // navigation and shell
  ops: ['Operations', '运营总览'], merchant: ['My orders', '我的订单'], driver: ['My route', '我的配送'],
  warehouse: ['Warehouse', '仓库'], login: ['Sign in', '登录'], logout: ['Logout', '退出'],
  connected: ['live', '实时'], reconnecting: ['reconnecting…', '重新连接中…'], idle: ['offline', '离线'],
  loading: ['Loading…', '加载中…'], retry: ['Retry', '重试'], refresh: ['Refresh', '刷新'],
  // login
  tokenLabel: ['Access token (JWT)', '访问令牌 (JWT)'], tokenHelp: ['Paste the token from `kuailv token` (or open the URL `kuailv token --url` prints).', '粘贴 `kuailv token` 给出的令牌（或打开 `kuailv token --url` 给出的链接）。'],
  signIn: ['Sign in', '登录'], badToken: ['This is not a JWT (three dot-separated parts).', '这不是有效的 JWT（应由三段组成）。'],
  signedOut: ['Signed out.', '已退出。'], needLogin: ['Please sign in', '请登录'],
  // errors
  refused: ['Access refused', '无权访问'], notFound: ['Not found', '未找到'], failed: ['Request failed', '请求失败'],
  unavailable: ['Unavailable', '暂不可用'], unavailableHelp: ['This panel needs an API endpoint that did not answer.', '此面板依赖的接口未响应。'],
  orderMissing: ['Order {id} does not exist.', '订单 {id} 不存在。'],
  // ops
  cityMap: ['City map', '城市地图'], funnel: ['Order funnel', '订单漏斗'], alerts: ['Open alerts', '未关闭告警'],
  kpis: ['KPIs', '关键指标'], pipeline: ['Pipeline health', '数据管道健康'], mainPath: ['Main path', '主流程'],
  branches: ['Branches', '分支'], median: ['median', '中位'], p90: ['p90', 'p90'], orders: ['Orders', '订单'],
  sampled: ['sampled {n} orders', '抽样 {n} 个订单'], asOf: ['as of {t}', '截至 {t}'],
  allSeverities: ['All severities', '全部级别'], allRules: ['All rules', '全部规则'], severity: ['Severity', '级别'],
  rule: ['Rule', '规则'], acknowledge: ['Acknowledge', '确认'], acknowledged: ['acknowledged by {by} {at}', '{by} 已确认 {at}'],
  noAlerts: ['No open alerts.', '暂无未关闭告警。'], warehouses: ['Warehouses', '仓库'], vans: ['Vans', '车辆'],
  legend: ['Legend', '图例'], coldChain: ['Cold chain', '冷链'], ok: ['ok', '正常'], warning: ['warning', '警告'],
  critical: ['critical', '严重'], truncated: ['showing {n} of {total}', '显示 {n} / {total}'],
  activeOnly: ['active orders only', '只看进行中的订单'],
  fulfilment: ['Fulfilment', '履约率'], onTimeRate: ['On-time rate', '准时率'], deliveryTime: ['Delivery time', '配送时长'],
  loss: ['Loss rate', '损耗率'], today: ['Today', '今日'], noSeries: ['No KPI points yet.', '暂无指标数据。'],
  eventsPerSec: ['events/s', '事件/秒'], topic: ['Topic', '主题'], endOffset: ['end offset', '末尾偏移'],
  consumerLag: ['Consumer lag', '消费延迟'], deadLetters: ['Dead letters', '死信'], total: ['total', '合计'],
  perSec: ['per s', '每秒'], recent: ['recent', '最近'], reason: ['Reason', '原因'], openAlertsN: ['open alerts', '未关闭告警'],
  // order page
  order: ['Order', '订单'], status: ['Status', '状态'], timeline: ['Timeline', '时间线'], lines: ['Lines', '商品明细'],
  sku: ['SKU', '商品编码'], item: ['Item', '商品'], ordered: ['Ordered', '下单'], picked: ['Picked', '拣货'],
  weighed: ['Weighed (kg)', '称重 (kg)'], delivered: ['Delivered', '签收'], short: ['Short', '缺货'],
  eta: ['ETA', '预计到达'], arrivingSoon: ['Arriving soon', '即将送达'], lateRisk: ['Late risk', '延误风险'],
  signature: ['Signature', '签收记录'], signedBy: ['Signed by {name} at {at}', '{name} 于 {at} 签收'],
  notSigned: ['Not signed yet.', '尚未签收。'], track: ['Track', '轨迹'], driverLbl: ['Driver', '司机'],
  vehicle: ['Vehicle', '车辆'], window: ['Delivery window', '配送时段'], customer: ['Customer', '客户'],
  duration: ['took {d}', '耗时 {d}'], noTrack: ['No GPS track for this order.', '此订单暂无 GPS 轨迹。'],
  orderAlerts: ['Alerts', '告警'], none: ['none', '无'], exception: ['Exception', '异常'], total2: ['Total', '合计'],
  // merchant / driver / track
  progress: ['Progress', '进度'], stockWarnings: ['Stock warnings', '库存预警'], shortLines: ['Short lines', '缺货明细'],
  onHand: ['on hand', '在库'], reorderPoint: ['reorder at', '补货点'], restock: ['restock {q}', '建议补货 {q}'],
  noOrders: ['No orders.', '暂无订单。'], more: ['More', '更多'], stopList: ['Stops in suggested order', '建议配送顺序'],
  sign: ['Sign', '签收'], reportException: ['Report exception', '上报异常'], receiverName: ['Receiver name', '收货人姓名'],
  drawSignature: ['Signature (draw below)', '签名（请在下方书写）'], clear: ['Clear', '清除'], submit: ['Submit', '提交'],
  cancel: ['Cancel', '取消'], description: ['Description', '描述'], reasonCode: ['Reason', '原因'],
  confirmReceipt: ['Confirm receipt', '确认收货'], sent: ['Sent: status {s}', '已提交：状态 {s}'],
  emptySignature: ['Please draw the signature first.', '请先签名。'], locationFrom: ['Location: {src}', '位置：{src}'],
  gps: ['this device', '本机定位'], vanPos: ["the van's last position", '车辆最新位置'], load: ['Load', '载重'],
  onBoard: ['{n} orders on board', '车上 {n} 单'], levels: ['Stock levels', '库存水平'], suggestions: ['Replenishment', '补货建议'],
  low: ['low', '偏低'], linesN: ['{n} lines', '{n} 个商品'],
};

export const STATUS = {
  CREATED: ['Created', '已创建'], PAID: ['Paid', '已支付'], PICKING: ['Picking', '拣货中'],
  DELIVERING: ['Delivering', '配送中'], SIGNED: ['Signed', '已签收'], OUT_OF_STOCK: ['Out of stock', '缺货'],
  EXCEPTION_HANDLING: ['Exception', '异常处理'], RETURNING: ['Returning', '退货中'], RETURNED: ['Returned', '已退货'],
  CLAIMING: ['Claiming', '理赔中'], CLAIM_SETTLED: ['Claim settled', '理赔完成'], CANCELLED: ['Cancelled', '已取消'],
};

const STAGES = {
  created: ['Created', '创建'], paid: ['Paid', '支付'], stock_checked: ['Stock checked', '库存核验'],
  picking_started: ['Picking started', '开始拣货'], weighed: ['Weighed', '称重'], packed: ['Packed', '打包'],
  dispatched: ['Dispatched', '发车'], arrived_warehouse: ['At warehouse', '到仓'], exception_reported: ['Exception', '异常上报'],
  arrived_customer: ['At customer', '到达客户'], left_customer: ['Left customer', '离开客户'], delivered: ['Delivered', '签收'],
  refused: ['Refused', '拒收'], return_started: ['Return started', '开始退货'], returned: ['Returned', '退货完成'],
  claim_opened: ['Claim opened', '发起理赔'], claim_settled: ['Claim settled', '理赔完成'], cancelled: ['Cancelled', '取消'],
};

const RULES = {
  'late-delivery': ['Late delivery', '配送超时'], stuck: ['Stuck order', '订单停滞'], 'stock-shortage': ['Stock shortage', '库存短缺'],
  'out-of-stock': ['Out of stock', '缺货'], 'weight-deviation': ['Weight deviation', '重量偏差'],
  'cold-chain-breach': ['Cold-chain breach', '冷链中断'], 'cold-chain-exposure': ['Cold-chain exposure', '冷链暴露'],
  'gps-silent': ['GPS silent', 'GPS 失联'], 'exception-reported': ['Exception reported', '异常上报'],
  'driver-nearby': ['Driver nearby', '司机临近'], 'arriving-soon': ['Arriving soon', '即将送达'],
  'likely-late': ['Likely late', '可能延误'], 'low-stock': ['Low stock', '库存偏低'],
};

export const REASONS = {
  TRAFFIC_ACCIDENT: ['Traffic accident', '交通事故'], VEHICLE_BREAKDOWN: ['Vehicle breakdown', '车辆故障'],
  CUSTOMER_UNREACHABLE: ['Customer unreachable', '联系不上客户'], ADDRESS_NOT_FOUND: ['Address not found', '地址错误'],
  GOODS_DAMAGED: ['Goods damaged', '货物损坏'], COLD_CHAIN_FAILURE: ['Cold-chain failure', '冷链故障'], OTHER: ['Other', '其他'],
};

/** Chinese district name (as in the GeoJSON) -> English */
export const DISTRICTS_EN = {
  东城区: 'Dongcheng', 西城区: 'Xicheng', 朝阳区: 'Chaoyang', 丰台区: 'Fengtai', 石景山区: 'Shijingshan', 海淀区: 'Haidian',
  门头沟区: 'Mentougou', 房山区: 'Fangshan', 通州区: 'Tongzhou', 顺义区: 'Shunyi', 昌平区: 'Changping', 大兴区: 'Daxing',
  怀柔区: 'Huairou', 平谷区: 'Pinggu', 密云区: 'Miyun', 延庆区: 'Yanqing',
};

const KEY = 'kuailv.lang';
/** @type {'en'|'zh'} */
const stored = globalThis.localStorage?.getItem(KEY); // guarded: the pure helpers are unit-tested under node
let lang = stored === 'zh' || stored === 'en' ? stored
  : ((globalThis.navigator?.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en');
const listeners = new Set();

export function currentLang() { return lang; }
export function setLang(/** @type {'en'|'zh'} */ next) {
  lang = next;
  localStorage.setItem(KEY, next);
  document.documentElement.lang = next === 'zh' ? 'zh-CN' : 'en';
  listeners.forEach((fn) => fn(next));
}
export function onLangChange(fn) { listeners.add(fn); return () => listeners.delete(fn); }
if (globalThis.document) document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';

const pick = (pair, fallback) => (pair ? pair[lang === 'zh' ? 1 : 0] : fallback);

/** A label, with {name} placeholders filled from vars. */
export function t(key, vars = {}) {
  const s = pick(D[key], key);
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] ?? `{${k}}`));
}
export const statusName = (s) => pick(STATUS[s], s);
export const stageName = (s) => pick(STAGES[s], s.replace(/_/g, ' '));
export const ruleName = (r) => pick(RULES[r], r);
export const reasonName = (r) => pick(REASONS[r], r);
const SEVERITIES = { CRITICAL: ['critical', '严重'], WARNING: ['warning', '警告'], INFO: ['info', '提示'] };
export const severityName = (s) => pick(SEVERITIES[s], s);
export const districtName = (zh) => (lang === 'zh' ? zh : DISTRICTS_EN[zh] || zh);

const locale = () => (lang === 'zh' ? 'zh-CN' : 'en-GB');
/** @param {string|number|null|undefined} v ISO string or epoch ms */
const toDate = (v) => (v === null || v === undefined || v === '' ? null : new Date(v));

/** Date and time in the viewer's time zone ("—" for none). */
export function fmtTime(v, withDate = true) {
  const d = toDate(v);
  if (!d || Number.isNaN(d.getTime())) return '—';
  const opts = withDate ? { dateStyle: 'short', timeStyle: 'short' } : { timeStyle: 'short' };
  return new Intl.DateTimeFormat(locale(), opts).format(d);
}
/** A duration in ms as "1 h 5 min" / "4 min 10 s". */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  const s = Math.round(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600); const m = Math.floor((s % 3600) / 60); const sec = s % 60;
  const [uh, um, us] = lang === 'zh' ? ['小时', '分', '秒'] : [' h', ' min', ' s'];
  if (h) return `${h}${uh} ${m}${um}`;
  if (m) return `${m}${um}${m < 10 && sec ? ` ${sec}${us}` : ''}`;
  return `${sec}${us}`;
}
export const fmtNum = (n, digits = 0) => (n === null || n === undefined ? '—'
  : new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(n));
export const fmtPct = (f) => (f === null || f === undefined ? '—'
  : new Intl.NumberFormat(locale(), { style: 'percent', maximumFractionDigits: 1 }).format(f));
