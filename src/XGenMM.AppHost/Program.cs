using XGenMM.AppHost;
using XGenMM.ServiceDefaults;

// The whole system in one process: the gateway and a silo with both roles (vision and decoder) on the embedded
// xgenmm-nano model, the chat page at the printed URL and a development API key. A gateway in front of remote silos is
// src/XGenMM.Gateway (docs/configuration.md).
var app = LocalApp.Build(args);
return app.RunToExitCode();
