// lintel's web UI: live lists fed by Server-Sent Events (the dashboard's feed, the
// facility display) and the display's clock. The HTML of each new item comes rendered
// and escaped from the server. No inline scripts: the pages' CSP allows only files.
(function () {
  'use strict';

  function startLive(list) {
    var max = parseInt(list.getAttribute('data-max') || '50', 10);
    var status = document.querySelector('[data-live-status]');
    var show = function (text, on) {
      if (status) {
        status.textContent = text;
        status.className = 'live-status ' + (on ? 'on' : 'off');
      }
    };
    var source = new EventSource(list.getAttribute('data-live'));
    source.addEventListener('open', function () {
      list.setAttribute('data-live-state', 'open');
      show('live', true);
    });
    source.addEventListener('error', function () {
      list.setAttribute('data-live-state', 'reconnecting');
      show('reconnecting…', false);
    });
    source.addEventListener('item', function (e) {
      var t = document.createElement('template');
      t.innerHTML = e.data;
      var node = t.content.firstElementChild;
      if (!node || (node.id && document.getElementById(node.id))) {
        return;
      }
      node.classList.add('fresh');
      list.insertBefore(node, list.firstChild);
      while (list.children.length > max) {
        list.removeChild(list.lastElementChild);
      }
      var empty = list.parentNode.querySelector('[data-empty]');
      if (empty) {
        empty.parentNode.removeChild(empty);
      }
      // Parts of the page that follow the log (today's count, doors' states) reload.
      document.body.dispatchEvent(new CustomEvent('live'));
    });
    window.addEventListener('pagehide', function () { source.close(); });
  }

  function startClock(el) {
    var tick = function () {
      el.textContent = new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    };
    tick();
    setInterval(tick, 5000);
  }

  // A Copy button beside something shown once (a guest's link): delegated, so that it
  // works in content htmx swapped in too.
  document.addEventListener('click', function (e) {
    var button = e.target.closest && e.target.closest('[data-copy]');
    if (!button || !navigator.clipboard) {
      return;
    }
    navigator.clipboard.writeText(button.getAttribute('data-copy')).then(function () {
      button.textContent = 'Copied';
    });
  });

  // A door's driver form shows the fields of the kind chosen (without script, all).
  function startDriverForm(select) {
    var form = select.closest('form');
    var show = function () {
      Array.prototype.forEach.call(form.querySelectorAll('fieldset[data-kind]'), function (set) {
        var on = set.getAttribute('data-kind') === select.value;
        set.hidden = !on;
        set.disabled = !on;
      });
    };
    select.addEventListener('change', show);
    show();
  }

  // A live refresh does not replace a part of the page where the operator is typing: a
  // note half written would be lost. That part catches up with the next refresh, or with
  // the page the form's answer loads.
  function typing(part) {
    var fields = part.querySelectorAll('input[type=text], input:not([type]), textarea');
    return Array.prototype.some.call(fields, function (f) { return f.value !== f.defaultValue; });
  }
  document.addEventListener('htmx:beforeRequest', function (e) {
    var part = e.detail.elt;
    if (e.detail.requestConfig.verb === 'get' && part.querySelectorAll && typing(part)) {
      e.preventDefault();
    }
  });

  // An upload's progress (htmx reports the request's).
  document.addEventListener('htmx:xhr:progress', function (e) {
    var bar = e.target.querySelector && e.target.querySelector('[data-upload-progress]');
    if (bar && e.detail.lengthComputable) {
      bar.hidden = false;
      bar.value = Math.round((e.detail.loaded / e.detail.total) * 100);
    }
  });

  document.addEventListener('DOMContentLoaded', function () {
    Array.prototype.forEach.call(document.querySelectorAll('[data-driver-kind]'), startDriverForm);
    Array.prototype.forEach.call(document.querySelectorAll('[data-live]'), startLive);
    Array.prototype.forEach.call(document.querySelectorAll('[data-clock]'), startClock);
    if (document.body.classList.contains('display')) {
      // A wall screen stays signed in by coming back now and then (and shows the
      // sign-in page when its session has ended).
      setTimeout(function () { window.location.reload(); }, 30 * 60 * 1000);
    }
  });
})();
