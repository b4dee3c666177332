using System.Reflection;
using XGenMM.Engine.Decoding;

namespace XGenMM.Engine.Tests;

public sealed class DecodeEngineOptionsTests
{
    /// <summary>A silo builds one engine per device from the bound options; a hand-written copy once left out
    /// CpuStep, SharedStepSlowdown and ShareLinger, so a configured value never reached the engines.</summary>
    [Fact]
    public void A_copy_for_one_device_carries_every_setting_and_tenant_weights_of_its_own()
    {
        var options = new DecodeEngineOptions();
        var settings = typeof(DecodeEngineOptions).GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite).ToList();
        Assert.True(settings.Count >= 17, $"{settings.Count} settings found");
        foreach (var p in settings)
            p.SetValue(options, Changed(p.PropertyType, p.GetValue(options)));
        options.TenantWeights["heavy"] = 0.25;

        var copy = options.Copy();
        foreach (var p in settings.Where(p => p.PropertyType != typeof(Dictionary<string, double>)))
            Assert.True(Equals(p.GetValue(options), p.GetValue(copy)), $"{p.Name}: {p.GetValue(copy)} in the copy, {p.GetValue(options)} set");
        Assert.Equal(options.TenantWeights, copy.TenantWeights);
        Assert.NotSame(options.TenantWeights, copy.TenantWeights);
        Assert.NotEqual(new DecodeEngineOptions().MixedStepSlowdown, copy.MixedStepSlowdown);
    }

    private static object? Changed(Type type, object? value) => value switch
    {
        int i => i + 7,
        long l => l + 7,
        double d => d + 0.5,
        bool b => !b,
        TimeSpan t => t + TimeSpan.FromSeconds(3),
        string s => s + "-changed",
        Enum e => Enum.GetValues(type).Cast<object>().First(v => !v.Equals(e)),
        Dictionary<string, double> => new Dictionary<string, double>(StringComparer.Ordinal) { ["light"] = 2 },
        _ => throw new InvalidOperationException($"no changed value for {type.Name}: extend this test"),
    };
}
