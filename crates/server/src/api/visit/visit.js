// The visitor's page: the link's fragment (never sent to the server, so never in a log)
// holds the doors and the personal secret; each button POSTs /open/{door} with it.
(function () {
  var params = new URLSearchParams(location.hash.slice(1));
  var secret = params.get("secret") || "";
  var doors = (params.get("doors") || "").split(",").filter(Boolean);
  var list = document.getElementById("doors");
  var status = document.getElementById("status");
  if (!secret || doors.length === 0) {
    status.textContent = "This link is incomplete; please use the one from your invitation.";
    return;
  }
  doors.forEach(function (door) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = "Open " + door;
    button.addEventListener("click", function () {
      button.disabled = true;
      status.textContent = "Opening " + door + "…";
      fetch("/open/" + encodeURIComponent(door), { method: "POST", headers: { Authorization: "Bearer " + secret } })
        .then(function (r) { return r.json().then(function (body) { return [r.status, body]; }); })
        .then(function (answer) {
          status.textContent = answer[0] === 200 ? "The door is open." : (answer[1].detail || "That did not work.");
        })
        .catch(function () { status.textContent = "No connection; please try again."; })
        .finally(function () { button.disabled = false; });
    });
    list.appendChild(button);
  });
})();
