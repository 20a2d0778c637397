// medfoundry console: streaming chat, copy buttons, confirmations. No inline scripts (the CSP allows 'self' only).
(function () {
  "use strict";
  function csrf() { return document.body.dataset.csrf; }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.classList.contains("confirm") && !window.confirm(form.dataset.confirm || "Are you sure?")) {
      event.preventDefault();
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (!button) return;
    var text = document.getElementById(button.dataset.copy).textContent;
    if (navigator.clipboard) navigator.clipboard.writeText(text);
    button.textContent = "copied";
  });

  var chat = document.getElementById("chat-form");
  if (!chat) return;
  chat.addEventListener("submit", async function (event) {
    event.preventDefault();
    var answer = document.getElementById("answer");
    var error = document.getElementById("chat-error");
    var meta = document.getElementById("chat-meta");
    var send = document.getElementById("send");
    answer.textContent = ""; error.hidden = true; meta.textContent = ""; send.disabled = true;
    var started = performance.now(), chunks = 0;
    try {
      var response = await fetch("/playground/chat", {
        method: "POST", body: new FormData(chat), headers: {"X-CSRF-Token": csrf()}, credentials: "same-origin",
      });
      if (!response.ok) {
        var text = await response.text();
        var holder = document.createElement("div"); holder.innerHTML = text;
        var found = holder.querySelector(".error");
        throw new Error(found ? found.textContent : ("HTTP " + response.status));
      }
      var reader = response.body.getReader(), decoder = new TextDecoder();
      for (;;) {
        var part = await reader.read();
        if (part.done) break;
        chunks += 1;
        answer.textContent += decoder.decode(part.value, {stream: true});
        answer.dataset.chunks = String(chunks);
      }
      meta.textContent = chunks + " chunks streamed in " + ((performance.now() - started) / 1000).toFixed(1) + " s";
      answer.dataset.done = "1";
    } catch (err) {
      error.textContent = err.message; error.hidden = false;
    } finally {
      send.disabled = false;
    }
  });
})();
