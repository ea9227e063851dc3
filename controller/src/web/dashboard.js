// stx-patch dashboard: progressive enhancement only. Every page works without this script;
// it adds live updates (polling the page itself), confirmations, and upload progress.
"use strict";

// Live sections: every [data-live][id] element is refreshed from a fresh copy of the page.
(function () {
  const live = document.querySelectorAll("[data-live][id]");
  if (live.length === 0) return;
  let busy = false;
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin",
        headers: { "X-Dashboard-Refresh": "1" },
      });
      if (response.redirected && new URL(response.url).pathname === "/login") {
        // The session ended: go to the login page rather than show stale state.
        window.location.assign(response.url);
        return;
      }
      if (!response.ok) throw new Error(String(response.status));
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const el of document.querySelectorAll("[data-live][id]")) {
        const fresh = doc.getElementById(el.id);
        if (!fresh) continue;
        // Keep open <details> open across refreshes.
        const open = new Set(
          Array.from(el.querySelectorAll("details[id]")).filter((d) => d.open).map((d) => d.id)
        );
        el.innerHTML = fresh.innerHTML;
        for (const d of el.querySelectorAll("details[id]")) if (open.has(d.id)) d.open = true;
        el.classList.remove("stale");
      }
    } catch (e) {
      for (const el of live) el.classList.add("stale");
    } finally {
      busy = false;
    }
  }
  window.setInterval(refresh, 2000);
})();

// Confirmations: forms with data-confirm ask first (delegated, so refreshed forms work too).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

// Upload progress: send the form with XMLHttpRequest to show how much has been sent.
(function () {
  const form = document.getElementById("upload-form");
  if (!form || !window.FormData) return;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const bar = document.getElementById("upload-progress");
    const status = document.getElementById("upload-status");
    const button = document.getElementById("upload");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      const pct = Math.floor((e.loaded * 100) / e.total);
      bar.value = pct;
      status.textContent = pct < 100 ? ` ${pct}% sent` : " verifying…";
    });
    xhr.setRequestHeader("X-Dashboard-Upload", "1");
    xhr.addEventListener("load", () => {
      if (xhr.status === 200) {
        // The outcome waits in the session: the patches page shows it.
        window.location.assign("/patches");
      } else {
        status.textContent = ` refused (HTTP ${xhr.status}): reload the page and try again`;
        button.disabled = false;
      }
    });
    xhr.addEventListener("error", () => {
      status.textContent = " the upload failed: the connection to the controller was lost";
      button.disabled = false;
    });
    bar.hidden = false;
    button.disabled = true;
    status.textContent = " 0% sent";
    xhr.send(new FormData(form));
  });
})();
