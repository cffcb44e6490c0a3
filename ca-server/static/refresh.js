// Live refresh for the inbox and request pages: polls the JSON API named by
// <main data-refresh="…"> every 5 seconds (with the session cookie) and
// reloads the page when the requests it shows change. It never reloads while
// the user is filling in a form. Served from /static because the CSP forbids
// inline scripts.
(function () {
  'use strict';
  var main = document.querySelector('main[data-refresh]');
  if (!main || !window.fetch) {
    return;
  }
  var url = main.getAttribute('data-refresh');
  var last = null;

  function busy() {
    var active = document.activeElement;
    if (active && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) {
      return true;
    }
    var fields = document.querySelectorAll('textarea, input[type=text], input:not([type])');
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) {
        return true;
      }
    }
    return false;
  }

  function signature(data) {
    var list = data.requests ? data.requests : [data];
    return JSON.stringify(list.map(function (r) {
      return [r.id, r.state, r.active, (r.approvals || []).length];
    }));
  }

  function poll() {
    fetch(url, { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data === null) {
          return;
        }
        var now = signature(data);
        if (last !== null && now !== last) {
          if (!busy()) {
            window.location.reload();
          }
          return;
        }
        last = now;
      })
      .catch(function () {})
      .then(function () { window.setTimeout(poll, 5000); });
  }

  poll();
})();
