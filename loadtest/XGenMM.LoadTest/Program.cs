using XGenMM.LoadTest;

using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancel.Cancel();
};
return await LoadTestProgram.RunAsync(args, Console.Out, Console.Error, cancel.Token);
