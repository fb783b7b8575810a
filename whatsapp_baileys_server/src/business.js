// Messages of WhatsApp Business accounts: a question with choices (buttons, list,
// template, interactive native flow) becomes a BusinessMessage; payments, orders,
// products and invoices become a Commerce message. Everything comes from the sender:
// JSON parameters are parsed only up to a size, strings are clipped, lists bounded.

import { proto } from "baileys";
import { BusinessMessageKind, CommerceKind } from "./gen/chatbot/common/v1/details_pb.js";
import { clip, sanitizeTypeName } from "./text.js";

const MAX_CHOICES = 20;
const MAX_PARAMS_JSON = 16 * 1024;
const ORDER_STATUS = proto.Message.OrderMessage.OrderStatus;

/** Native-flow button names that are payments or orders rather than a choice. */
const COMMERCE_FLOWS = new Map([
  ["review_and_pay", CommerceKind.PAYMENT_REQUEST],
  ["payment_info", CommerceKind.PAYMENT_REQUEST],
  ["payment_method", CommerceKind.PAYMENT_REQUEST],
  ["payment_status", CommerceKind.PAYMENT],
  ["review_order", CommerceKind.ORDER_STATUS],
  ["order_status", CommerceKind.ORDER_STATUS],
]);

export const BUSINESS_TYPES = Object.freeze(["buttonsMessage", "listMessage", "templateMessage", "interactiveMessage"]);
export const COMMERCE_TYPES = Object.freeze([
  "orderMessage",
  "requestPaymentMessage",
  "sendPaymentMessage",
  "declinePaymentRequestMessage",
  "cancelPaymentRequestMessage",
  "paymentInviteMessage",
  "productMessage",
  "invoiceMessage",
]);

function str(value) {
  return typeof value === "string" ? value : "";
}

function parseParams(json) {
  const text = str(json);
  if (!text || text.length > MAX_PARAMS_JSON) return {};
  try {
    const parsed = JSON.parse(text);
    return parsed && typeof parsed === "object" ? parsed : {};
  } catch {
    return {};
  }
}

/** A Long / number / string count as a non-negative safe integer, else undefined. */
function count(value) {
  let n;
  if (typeof value === "number") n = value;
  else if (typeof value === "string" && /^-?\d+$/.test(value)) n = Number(value);
  else if (value && typeof value === "object" && typeof value.low === "number") {
    n = typeof value.toNumber === "function" ? value.toNumber() : (value.high >>> 0) * 2 ** 32 + (value.low >>> 0);
  }
  return Number.isSafeInteger(n) ? n : undefined;
}

/** `amount1000` (thousandths) or Money `{value, offset}` as a decimal string. */
function decimal(value, offset = 1000) {
  const n = count(value);
  const o = count(offset);
  if (n === undefined || o === undefined || o <= 0 || o > 1e9) return "";
  const digits = Math.round(Math.log10(o));
  return (n / o).toFixed(Math.max(0, Math.min(digits, 6)));
}

class Choices {
  constructor() {
    this.items = [];
    this.omitted = 0;
  }

  add(id, title, description) {
    if (!str(id) && !str(title)) return;
    if (this.items.length >= MAX_CHOICES) {
      this.omitted += 1;
      return;
    }
    this.items.push({ id: clip(id, 256), title: clip(title, 1024), description: clip(description, 1024) });
  }
}

function business(kind, { header, body, footer }, choices) {
  return {
    case: "businessMessage",
    value: {
      kind,
      header: clip(header, 1024),
      body: clip(body, 4096),
      footer: clip(footer, 1024),
      choices: choices.items,
      omittedChoiceCount: choices.omitted,
    },
  };
}

function commerce(kind, fields) {
  return {
    case: "commerce",
    value: {
      kind,
      title: clip(fields.title, 1024),
      text: clip(fields.text, 4096),
      amount: clip(fields.amount, 64),
      currency: clip(str(fields.currency).replace(/[^A-Za-z]/g, "").toUpperCase(), 8),
      referenceId: clip(fields.referenceId, 256),
      status: fields.status ? sanitizeTypeName(fields.status) : "",
      itemCount: Math.max(0, Math.min(count(fields.itemCount) ?? 0, 0xffffffff)),
    },
  };
}

function textOfNote(note) {
  const n = note?.extendedTextMessage ?? note;
  return str(n?.text) || str(note?.conversation);
}

function nativeFlow(m, kind = BusinessMessageKind.INTERACTIVE) {
  const buttons = Array.isArray(m?.nativeFlowMessage?.buttons) ? m.nativeFlowMessage.buttons : [];
  const texts = { header: str(m?.header?.title) || str(m?.header?.subtitle), body: str(m?.body?.text), footer: str(m?.footer?.text) };
  for (const button of buttons) {
    const kind = COMMERCE_FLOWS.get(str(button?.name));
    if (kind === undefined) continue;
    const p = parseParams(button.buttonParamsJson);
    const total = p.total_amount ?? p.order?.subtotal;
    return commerce(kind, {
      title: texts.header || p.order?.items?.[0]?.name,
      text: texts.body,
      amount: total ? decimal(total.value, total.offset ?? 100) : "",
      currency: p.currency,
      referenceId: p.reference_id,
      status: str(p.order?.status) || str(p.payment_status) || str(p.status),
      itemCount: Array.isArray(p.order?.items) ? p.order.items.length : undefined,
    });
  }
  const choices = new Choices();
  for (const button of buttons) {
    const p = parseParams(button?.buttonParamsJson);
    if (Array.isArray(p.sections)) {
      for (const section of p.sections) {
        for (const row of Array.isArray(section?.rows) ? section.rows : []) choices.add(row?.id, row?.title ?? row?.header, row?.description);
      }
    } else {
      choices.add(str(p.id) || str(button?.name), str(p.display_text) || str(p.title), str(p.url) || str(p.copy_code));
    }
  }
  for (const card of Array.isArray(m?.carouselMessage?.cards) ? m.carouselMessage.cards : []) {
    choices.add("", str(card?.header?.title) || str(card?.body?.text), str(card?.body?.text));
  }
  return business(kind, texts, choices);
}

function template(m) {
  const t = m?.hydratedTemplate ?? m?.hydratedFourRowTemplate ?? m?.fourRowTemplate;
  if (!t && m?.interactiveMessageTemplate) return nativeFlow(m.interactiveMessageTemplate, BusinessMessageKind.TEMPLATE);
  const choices = new Choices();
  for (const b of Array.isArray(t?.hydratedButtons) ? t.hydratedButtons : []) {
    if (b?.quickReplyButton) choices.add(b.quickReplyButton.id, b.quickReplyButton.displayText, "");
    else if (b?.urlButton) choices.add("", b.urlButton.displayText, b.urlButton.url);
    else if (b?.callButton) choices.add("", b.callButton.displayText, b.callButton.phoneNumber);
  }
  return business(BusinessMessageKind.TEMPLATE, {
    header: str(t?.hydratedTitleText),
    body: str(t?.hydratedContentText) || str(t?.content?.namespace),
    footer: str(t?.hydratedFooterText),
  }, choices);
}

/** The MessageDetails kind of a business or commerce content type, or undefined. */
export function businessDetails(contentType, m) {
  switch (contentType) {
    case "buttonsMessage": {
      const choices = new Choices();
      for (const b of Array.isArray(m?.buttons) ? m.buttons : []) choices.add(b?.buttonId, b?.buttonText?.displayText, "");
      const header = str(m?.text) || str(m?.imageMessage?.caption) || str(m?.videoMessage?.caption) || str(m?.documentMessage?.fileName);
      return business(BusinessMessageKind.BUTTONS, { header, body: str(m?.contentText), footer: str(m?.footerText) }, choices);
    }
    case "listMessage": {
      const choices = new Choices();
      for (const section of Array.isArray(m?.sections) ? m.sections : []) {
        for (const row of Array.isArray(section?.rows) ? section.rows : []) choices.add(row?.rowId, row?.title, row?.description);
      }
      return business(BusinessMessageKind.LIST, { header: str(m?.title), body: str(m?.description), footer: str(m?.footerText) }, choices);
    }
    case "templateMessage":
      return template(m);
    case "interactiveMessage":
      return nativeFlow(m);
    case "orderMessage":
      return commerce(CommerceKind.ORDER, {
        title: m?.orderTitle,
        text: m?.message,
        amount: m?.totalAmount1000 === undefined || m?.totalAmount1000 === null ? "" : decimal(m.totalAmount1000),
        currency: m?.totalCurrencyCode,
        referenceId: m?.orderId,
        status: typeof m?.status === "number" ? ORDER_STATUS[m.status] : str(m?.status),
        itemCount: m?.itemCount,
      });
    case "requestPaymentMessage": {
      const money = m?.amount;
      return commerce(CommerceKind.PAYMENT_REQUEST, {
        text: textOfNote(m?.noteMessage),
        amount: money?.value !== undefined && money?.value !== null ? decimal(money.value, money.offset ?? 1000) : decimal(m?.amount1000),
        currency: str(money?.currencyCode) || m?.currencyCodeIso4217,
      });
    }
    case "sendPaymentMessage":
      return commerce(CommerceKind.PAYMENT, { text: textOfNote(m?.noteMessage), referenceId: m?.requestMessageKey?.id, status: "sent" });
    case "declinePaymentRequestMessage":
      return commerce(CommerceKind.PAYMENT, { referenceId: m?.key?.id, status: "declined" });
    case "cancelPaymentRequestMessage":
      return commerce(CommerceKind.PAYMENT, { referenceId: m?.key?.id, status: "canceled" });
    case "paymentInviteMessage":
      return commerce(CommerceKind.PAYMENT_REQUEST, { status: "invite" });
    case "productMessage": {
      const p = m?.product;
      return commerce(CommerceKind.PRODUCT, {
        title: p?.title,
        text: str(p?.description) || str(m?.body),
        amount: p?.priceAmount1000 === undefined || p?.priceAmount1000 === null ? "" : decimal(p.priceAmount1000),
        currency: p?.currencyCode,
        referenceId: str(p?.productId) || str(p?.retailerId),
      });
    }
    case "invoiceMessage":
      return commerce(CommerceKind.INVOICE, { text: m?.note, referenceId: m?.token });
    default:
      return undefined;
  }
}
