using TorchSharp;
using XGenMM.Model.Language;
using static TorchSharp.torch;

namespace XGenMM.Model.Tests.Language;

public sealed class AttentionBiasTests
{
    [Fact]
    public void Causal_padding_and_the_sliding_window_follow_transformers_4_41()
    {
        using var scope = torch.NewDisposeScope();
        // Batch of 2, 8 positions, window 3: key j is visible to query i when j <= i and i - j <= 3.
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1 }, [2, 8]);
        var bias = AttentionBias.Build(mask, 8, slidingWindow: 3, ScalarType.Float32);
        Assert.Equal(new long[] { 2, 1, 8, 8 }, bias.shape);
        var b = bias.data<float>().ToArray();
        for (int row = 0; row < 2; row++)
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 8; j++)
                {
                    bool visible = j <= i && i - j <= 3 && (row == 0 || j >= 2);
                    float v = b[row * 64 + i * 8 + j];
                    Assert.True(visible ? v == 0f : v == float.MinValue, $"row {row} query {i} key {j}: {v}");
                }
    }

    [Fact]
    public void Decode_steps_see_the_last_queries_of_the_cache()
    {
        using var scope = torch.NewDisposeScope();
        var mask = torch.ones([1, 3000], ScalarType.Int64);
        var bias = AttentionBias.Build(mask, 1, slidingWindow: 2047, ScalarType.Float32).data<float>().ToArray();
        // The query is position 2999: keys 952..2999 (2048 keys) are visible, 0..951 are outside the window.
        Assert.Equal(float.MinValue, bias[951]);
        Assert.Equal(0f, bias[952]);
        Assert.Equal(2048, bias.Count(v => v == 0f));
    }
}
