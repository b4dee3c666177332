using XGenMM.Engine.Decoding;

namespace XGenMM.Engine.Tests;

/// <summary>The pass-cost fit on made-up passes: no model, no timing.</summary>
public sealed class StepCostFitTests
{
    [Fact]
    public void Passes_of_a_known_cost_give_back_the_fixed_part_the_cost_of_a_row_and_of_a_prompt_position()
    {
        // 4 ms + 0.5 ms a row + 0.05 ms a prompt position; the first passes (start-up work) cost 50 ms and are skipped.
        var fit = new StepCostFit();
        for (int i = 0; i < StepCostFit.WarmUpPasses; i++) fit.Record(0.050, 4, 0);
        Assert.False(fit.Fitted);
        for (int i = 0; i < 2000; i++)
        {
            int rows = 2 + i % 12;
            fit.Record(0.004 + 0.0005 * rows, rows, 0);
            if (i % 3 == 0) fit.Record(0.004 + 0.0005 * rows + 0.00005 * 40, rows, 40);
        }
        Assert.True(fit.Fitted);
        Assert.Equal(0.004, fit.FixedSeconds, 6);
        Assert.Equal(0.0005, fit.SecondsPerRow, 7);
        Assert.Equal(0.00005, fit.SecondsPerPrefillToken, 7);
        Assert.Equal(0.004 + 0.0005 * 8 + 0.00005 * 10, fit.Predict(8, 10), 6);
    }

    [Fact]
    public void A_steady_batch_follows_the_level_with_a_slope_fitted_before()
    {
        var fit = new StepCostFit();
        for (int i = 0; i < 2000; i++) fit.Record(0.004 + 0.0005 * (2 + i % 12), 2 + i % 12, 0);
        // The same 10 rows from now on, each pass 1 ms slower than the line said (a busier machine): the rows no longer
        // spread, so no slope can be fitted from them; the one fitted while they did is kept and the level followed.
        for (int i = 0; i < 2000; i++) fit.Record(0.004 + 0.0005 * 10 + 0.001, 10, 0);
        Assert.InRange(fit.SecondsPerRow, 0.0001, 0.002);
        Assert.Equal(0.004 + 0.0005 * 10 + 0.001, fit.Predict(10, 0), 5);
    }

    [Fact]
    public void Decode_passes_are_predicted_from_the_row_counts_measured_not_from_the_line_far_from_them()
    {
        var fit = new StepCostFit();
        for (int i = 0; i < StepCostFit.WarmUpPasses; i++) fit.Record(0.050, 2, 0);
        // 2 rows took 3 ms earlier; then a long steady batch of 30 rows at 30 ms (the line fitted there says little
        // about 2 rows); 10 rows once at 9 ms.
        for (int i = 0; i < 50; i++) fit.Record(0.003, 2, 0);
        fit.Record(0.009, 10, 0);
        for (int i = 0; i < 3000; i++) fit.Record(0.030, 30, 0);
        Assert.Equal(0.003, fit.Measured(2), 6);
        Assert.Equal(0.030, fit.Measured(30), 6);
        Assert.Equal(0.003 + (0.009 - 0.003) * 4 / 8, fit.Measured(6), 6);
        Assert.InRange(fit.Measured(1), fit.FixedSeconds, 0.003);
    }
}
