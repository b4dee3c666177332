namespace XGenMM.Model.Kernels;

/// <summary>One product y[M, N] = x[M, K] W (+ bias), split by blocks of <see cref="PackedWeight.BlockColumns"/>
/// output columns: each participant streams its own part of the weight once for all M rows.</summary>
internal unsafe struct MatMulJob
{
    public PackedWeight? Weight;
    public float* X;
    /// <summary>X rounded to int16 (int8 weights only).</summary>
    public Int16Activations? Activations;
    public float* Y;
    public int Rows;
    public int Units;
    public int Participants;

    public readonly (int From, int To) Share(int participant)
    {
        long from = (long)Units * participant / Participants, to = (long)Units * (participant + 1) / Participants;
        return ((int)from, (int)to);
    }

    /// <summary>Other work split the same way (units [from, to) per participant) instead of a product.</summary>
    public IParallelWork? Work;

    public readonly void Execute(int fromBlock, int toBlock)
    {
        if (Work is not null) Work.Execute(fromBlock, toBlock);
        else Weight!.MultiplyBlocks(X, Activations, Y, Rows, fromBlock, toBlock);
    }
}

/// <summary>Work of independent units that <see cref="KernelWorkers"/> can share out like a product's blocks.</summary>
internal interface IParallelWork
{
    void Execute(int fromUnit, int toUnit);
}
