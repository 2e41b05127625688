// deliver dashboard: live fragments over server-sent events, the operator's buttons. No build step.
(function () {
  "use strict";
  var token = document.querySelector('meta[name="deliver-token"]').content;
  var selected = document.body.getAttribute("data-selected") || "";
  var conn = document.getElementById("conn");
  var notice = document.getElementById("notice");

  function connect() {
    var url = "/events" + (selected ? "?d=" + encodeURIComponent(selected) : "");
    var source = new EventSource(url);
    source.onopen = function () { conn.textContent = "live"; conn.className = "conn live"; };
    source.onmessage = function (e) {
      var m = JSON.parse(e.data);
      ["error", "list", "detail"].forEach(function (id) {
        if (id in m) {
          var el = document.getElementById(id);
          if (el && el.innerHTML !== m[id]) { el.innerHTML = m[id]; }
        }
      });
      conn.textContent = "live";
      conn.className = "conn live";
      document.body.setAttribute("data-updated", m.at);
    };
    source.onerror = function () {
      conn.textContent = "disconnected from the dashboard server: retrying";
      conn.className = "conn down";
    };
  }

  function say(text, ok) {
    notice.textContent = text;
    notice.className = ok ? "ok" : "err";
  }

  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-verb]");
    if (!b) { return; }
    var verb = b.getAttribute("data-verb");
    var ns = b.getAttribute("data-ns");
    var name = b.getAttribute("data-name");
    if (!window.confirm(verb + " " + ns + "/" + name + "?")) { return; }
    b.disabled = true;
    fetch("/api/request", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Deliver-Token": token },
      body: JSON.stringify({ namespace: ns, name: name, verb: verb })
    }).then(function (r) {
      return r.json().catch(function () { return { message: r.status + " " + r.statusText }; })
        .then(function (body) { say(body.message || (r.status + " " + r.statusText), r.ok); });
    }).catch(function (err) {
      say("the dashboard server did not answer: " + err, false);
    }).then(function () { b.disabled = false; });
  });

  connect();
})();
