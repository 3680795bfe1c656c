"use strict";
// downloads page script: built in the web UI work (issue #11).
