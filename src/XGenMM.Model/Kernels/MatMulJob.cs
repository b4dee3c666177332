namespace XGenMM.Model.Kernels;

/// <summary>One product y[M, N] = x[M, K] W (+ bias), split by blocks of <see cref="PackedWeight.BlockColumns"/>
/// output columns: each claimed range of blocks is streamed once for all M rows.</summary>
internal unsafe struct MatMulJob
{
    public PackedWeight? Weight;
    public float* X;
    /// <summary>X rounded to int16 (int8 weights only).</summary>
    public Int16Activations? Activations;
    public float* Y;
    public int Rows;
    public int Units;

    /// <summary>Other work shared out the same way (ranges of units [from, to)) instead of a product.</summary>
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
