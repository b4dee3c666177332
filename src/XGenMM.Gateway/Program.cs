using XGenMM.Gateway.Hosting;

// With no configuration: a single-process cluster (co-hosted silo with both roles) on the embedded xgenmm-nano model,
// the chat page at the printed URL and a development API key. With Gateway:Mode=Cluster: a gateway in front of remote
// silos (docs/configuration.md).
var app = GatewayApp.Build(args);
app.Run();
