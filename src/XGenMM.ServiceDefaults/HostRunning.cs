using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Hosting;

namespace XGenMM.ServiceDefaults;

public static class HostRunning
{
    /// <summary>Runs the host until it stops and returns the process's exit code. A host told to stop (SIGTERM) while it
    /// was still starting, waiting for its cluster, exits with 0 like any stopped host instead of aborting on the
    /// cancelled start; a failed start still throws (the host has logged why).</summary>
    public static int RunToExitCode(this WebApplication app)
    {
        try
        {
            app.Run();
        }
        catch (OperationCanceledException) when (app.Lifetime.ApplicationStopping.IsCancellationRequested)
        {
        }
        return 0;
    }
}
