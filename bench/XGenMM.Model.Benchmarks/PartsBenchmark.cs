using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using XGenMM.Model;
using XGenMM.Model.Configuration;
using static TorchSharp.torch;

/// <summary>
/// Resident memory of each silo role's model half (issue 17): `parts MODEL_DIR [dtype]` loads MODEL_DIR through the
/// real loader; `parts real [dtype]` builds a model of the real xGen-MM v1.5 shapes (the shared fixtures' config.json)
/// with random weights, in bfloat16 by default so that all of it fits in 24 GiB. Each role runs in a child process of
/// its own (RSS never shrinks back after a dispose), one after the other; the table lists RSS before and after and the
/// bytes of the parameters.
/// </summary>
internal static class PartsBenchmark
{
    private static readonly (string Role, ModelParts Parts)[] Roles = [("vision", ModelParts.Vision), ("decoder", ModelParts.Language), ("vision,decoder", ModelParts.All)];

    public static int Run(string[] args)
    {
        if (args.Length >= 3 && args[0] == "parts-child") return Child(args[1], args[2], Enum.Parse<ModelParts>(args[3]));
        string source = args.Length > 1 ? args[1] : "real";
        string dtype = args.Length > 2 ? args[2] : source == "real" ? "bfloat16" : "float32";
        Console.WriteLine($"Resident memory per silo role, model '{source}', {dtype}, {Environment.ProcessorCount} cores");
        Console.WriteLine("| silo roles | parts | parameters | parameter bytes | RSS before | RSS after load | RSS added | load s |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var (role, parts) in Roles)
        {
            var start = new ProcessStartInfo(Environment.ProcessPath!, [typeof(PartsBenchmark).Assembly.Location, "parts-child", source, dtype, parts.ToString()])
            { RedirectStandardOutput = true };
            if (!Environment.ProcessPath!.EndsWith("dotnet", StringComparison.Ordinal)) start.ArgumentList.RemoveAt(0);
            using var child = Process.Start(start)!;
            string line = child.StandardOutput.ReadToEnd().Trim().Split('\n')[^1];
            child.WaitForExit();
            Console.WriteLine($"| {role} | {parts} | {line}");
        }
        return 0;
    }

    private static int Child(string source, string dtypeName, ModelParts parts)
    {
        XGenMM.Model.Runtime.TorchRuntime.EnsureLoaded();
        var dtype = dtypeName switch { "bfloat16" => ScalarType.BFloat16, "float16" => ScalarType.Float16, _ => ScalarType.Float32 };
        GC.Collect();
        long before = Memory.Rss();
        var clock = Stopwatch.StartNew();
        XGenMMModel model;
        if (source == "real")
        {
            var config = XGenMMConfig.FromDirectory(FindRealConfig());
            model = new XGenMMModel(config, torch.CPU, dtype, parts);
            ModelInitialization.InitializeRandom(model, seed: 1);
        }
        else model = XGenMMPipeline.Load(source, torch.CPU, dtype, parts: parts).Model;
        double seconds = clock.Elapsed.TotalSeconds;
        long after = Memory.Rss();
        long count = model.parameters().Sum(p => p.NumberOfElements);
        long bytes = model.parameters().Sum(p => p.NumberOfElements * p.ElementSize);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{count / 1e6:0.0} M | {Mib(bytes)} | {Mib(before)} | {Mib(after)} | {Mib(after - before)} | {seconds:0.0} |"));
        GC.KeepAlive(model);
        return 0;
    }

    private static string Mib(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:0} MiB");

    /// <summary>The shared fixtures' folder of the real model's config and tokenizer files.</summary>
    internal static string FindRealConfig()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            foreach (var candidate in new[] { Path.Combine(dir.FullName, "shared"), Path.Combine(dir.FullName, "..", "shared") })
                if (File.Exists(Path.Combine(candidate, "fixtures", "xgenmm-base-r-v1.5", "config.json")))
                    return Path.Combine(candidate, "fixtures", "xgenmm-base-r-v1.5");
        throw new DirectoryNotFoundException("shared/fixtures/xgenmm-base-r-v1.5 (the real model's config.json) was not found.");
    }
}
