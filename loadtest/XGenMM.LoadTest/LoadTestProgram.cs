using XGenMM.LoadTest.Cli;
using XGenMM.LoadTest.Load;
using XGenMM.LoadTest.Metrics;
using XGenMM.LoadTest.Reporting;

namespace XGenMM.LoadTest;

/// <summary>The command line as a library call (Program.cs and the tests both go through here).</summary>
public static class LoadTestProgram
{
    /// <summary>Runs the command; 0 on success, 2 for a bad command line, 1 when the run could not be done.</summary>
    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        RunRequest request;
        try
        {
            request = CommandLine.Parse(args);
            foreach (var e in request.Experiments) e.Validate();
        }
        catch (Exception e) when (e is ArgumentException or FormatException or IOException)
        {
            await error.WriteLineAsync(e.Message).ConfigureAwait(false);
            await error.WriteLineAsync("xgenmm-loadtest --help lists the flags.").ConfigureAwait(false);
            return 2;
        }
        if (request.Help)
        {
            await output.WriteLineAsync(CommandLine.Usage).ConfigureAwait(false);
            return 0;
        }
        if (request.ReportInputs.Count > 0) return await ReportAsync(request, output).ConfigureAwait(false);

        var started = DateTimeOffset.UtcNow;
        string loadAtStart = MachineInfo.ReadLoadAverage();
        var results = new List<ExperimentResult>();
        using var progress = request.Quiet ? null : new ConsoleProgress(output);
        var runner = new ExperimentRunner(progress, request.Quiet ? null : output);
        int rc = 0;
        try
        {
            foreach (var experiment in request.Experiments)
            {
                if (!request.Quiet) await output.WriteLineAsync(Fmt.Inv($"-- {experiment.Name}: {experiment.Mode.ToString().ToLowerInvariant()} loop, {experiment.Protocol}, {experiment.Url}")).ConfigureAwait(false);
                var result = await runner.RunAsync(experiment, cancellationToken).ConfigureAwait(false);
                results.Add(result);
                if (!request.Quiet) await output.WriteLineAsync(ReportWriter.Console(result)).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await error.WriteLineAsync("Cancelled; writing the experiments that finished.").ConfigureAwait(false);
            rc = 1;
        }
        catch (HttpRequestException e)
        {
            await error.WriteLineAsync($"The gateway could not be reached or refused a setup call: {e.Message}").ConfigureAwait(false);
            rc = 1;
        }
        catch (InvalidOperationException e)
        {
            await error.WriteLineAsync(e.Message).ConfigureAwait(false);
            rc = 1;
        }
        if (request.OutputDirectory is { } dir && results.Count > 0)
        {
            var report = new RunReport
            {
                Started = started,
                Finished = DateTimeOffset.UtcNow,
                Target = request.Experiments[0].Url.ToString(),
                CommandLine = "xgenmm-loadtest " + string.Join(' ', MaskKeys(args)),
                Machine = MachineInfo.Current() with { LoadAverageAtStart = loadAtStart },
                Notes = request.Notes,
                Experiments = results,
            };
            foreach (var file in ReportWriter.Write(report, dir)) await output.WriteLineAsync("wrote " + file).ConfigureAwait(false);
        }
        return rc;
    }

    /// <summary>The <c>report</c> command: merges results files (in order) and renders them again.</summary>
    private static async Task<int> ReportAsync(RunRequest request, TextWriter output)
    {
        var reports = request.ReportInputs.Select(ReportWriter.Read).ToList();
        var merged = reports[0] with
        {
            Started = reports.Min(r => r.Started),
            Finished = reports.Max(r => r.Finished),
            Notes = [.. reports.SelectMany(r => r.Notes).Distinct(), .. request.Notes],
            Experiments = [.. reports.SelectMany(r => r.Experiments)],
            CommandLine = string.Join("\n", reports.Select(r => r.CommandLine).Where(c => c.Length > 0)),
        };
        foreach (var e in merged.Experiments) await output.WriteLineAsync(ReportWriter.Console(e)).ConfigureAwait(false);
        if (request.OutputDirectory is { } dir)
            foreach (var file in ReportWriter.Write(merged, dir)) await output.WriteLineAsync("wrote " + file).ConfigureAwait(false);
        return 0;
    }

    /// <summary>
    /// API keys never reach a report: the value after --api-key, and the key part of --tenant, are masked; run notes are
    /// shortened (the report lists them anyway).
    /// </summary>
    internal static IEnumerable<string> MaskKeys(IReadOnlyList<string> args)
    {
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (i > 0 && args[i - 1] == "--api-key") yield return "***";
            else if (i > 0 && args[i - 1] == "--run-note") yield return "\"…\"";
            else if (i > 0 && args[i - 1] == "--tenant")
            {
                var parts = a.Split(':');
                if (parts.Length > 1) parts[1] = "***";
                yield return string.Join(':', parts);
            }
            else yield return a.Contains(' ', StringComparison.Ordinal) ? "\"" + a + "\"" : a;
        }
    }
}
