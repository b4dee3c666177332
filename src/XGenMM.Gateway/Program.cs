using XGenMM.Gateway.Hosting;

// The gateway in front of remote silos (Cluster mode): an Orleans client that needs Cluster:* and Tenants:* from
// configuration (docs/configuration.md). The single-process system is src/XGenMM.AppHost.
var app = GatewayApp.Build(args);
app.Run();
