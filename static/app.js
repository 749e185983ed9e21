// The dashboard's few lines of script: copy buttons, confirmations, the filter
// rule rows, the auth fields of the endpoint form, and error toasts for htmx.
// Every page works without it; it only saves clicks.
"use strict";

document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) copyText(copy);
  const rule = event.target.closest("[data-rule]");
  if (rule) editRules(rule);
});

// Copy the text of the element the button names; the Clipboard API needs a
// secure context, so plain http falls back to selecting the text.
function copyText(button) {
  const source = document.querySelector(button.dataset.copy);
  const text = source.value !== undefined ? source.value : source.textContent;
  const label = button.dataset.label || (button.dataset.label = button.textContent);
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = label; }, 2000); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
  } else {
    source.select();
    document.execCommand("copy");
    done();
  }
}

// Forms that change something ask first when they say so.
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

// Select boxes that act at once (the tenant switcher).
document.addEventListener("change", (event) => {
  if (event.target.matches("[data-autosubmit]")) event.target.form.requestSubmit();
  if (event.target.matches("#auth_type")) showAuthFields();
  if (event.target.matches("#verify_tls")) showTlsWarning();
});

// Filter rules: add, remove and reorder rows; the preview listens for "rules-changed".
function editRules(button) {
  const list = document.querySelector("[data-rules]");
  const row = button.closest(".rule-row");
  const action = button.dataset.rule;
  if (action === "add") {
    const fresh = document.getElementById("rule-template").content.firstElementChild.cloneNode(true);
    list.append(fresh);
    fresh.querySelector("input").focus();
    document.getElementById("no-rules")?.remove();
  } else if (action === "remove") {
    const next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    (next ? next.querySelector("input") : document.querySelector('[data-rule="add"]')).focus();
  } else if (action === "up" && row.previousElementSibling) {
    row.previousElementSibling.before(row);
    button.focus();
  } else if (action === "down" && row.nextElementSibling) {
    row.nextElementSibling.after(row);
    button.focus();
  }
  list.querySelectorAll("input").forEach((input, index) => { input.id = "rule-" + index; });
  list.querySelectorAll("label").forEach((label, index) => { label.htmlFor = "rule-" + index; });
  list.closest("form").dispatchEvent(new Event("rules-changed", { bubbles: true }));
}

// Endpoint form: show only the credential fields of the chosen auth type.
function showAuthFields() {
  const select = document.getElementById("auth_type");
  if (!select) return;
  document.querySelectorAll("[data-auth-type]").forEach((group) => {
    group.hidden = group.dataset.authType !== select.value;
  });
}

function showTlsWarning() {
  const box = document.getElementById("verify_tls");
  document.querySelectorAll("[data-show-when-unchecked]").forEach((warning) => { warning.hidden = box.checked; });
}

// htmx does not swap 4xx/5xx answers; say what went wrong instead of doing nothing.
document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  const page = new DOMParser().parseFromString(xhr.responseText, "text/html");
  const reason = page.querySelector(".error-description");
  showToast(`${xhr.status}: ${reason ? reason.textContent : xhr.statusText}`);
});
document.addEventListener("htmx:sendError", () => showToast("The hub did not answer. Is it running?"));

function showToast(message) {
  const toast = document.getElementById("toast");
  toast.textContent = message;
  toast.hidden = false;
  clearTimeout(showToast.timer);
  showToast.timer = setTimeout(() => { toast.hidden = true; }, 6000);
}

document.addEventListener("DOMContentLoaded", showAuthFields);
