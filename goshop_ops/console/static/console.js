// The ops console's one script: every <time datetime="…Z"> is shown in the
// operator's own time zone, with the UTC time kept in its title (hover).
// Without it the pages still work and show UTC.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3,
    timeZoneName: "short"
  });
  document.querySelectorAll("time[datetime]").forEach(function (node) {
    var utc = node.getAttribute("datetime");
    var at = new Date(utc);
    if (isNaN(at.getTime())) { return; }
    node.textContent = format.format(at);
    node.title = utc + " (UTC); shown in " + zone;
  });
});
