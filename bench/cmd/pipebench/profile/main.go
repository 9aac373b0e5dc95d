// Command profile runs a pipeline spec in-process with Kiln's engine and
// the built-in file and transform components, under the CPU profiler, so
// that `go tool pprof` shows where a `kiln pipeline run` of the same spec
// spends its time. pipebench writes the spec it measures into its work
// directory (bench/out/pipebench/work/kiln-1.yaml):
//
//	go run ./bench/cmd/pipebench/profile --cpuprofile cpu.pprof bench/out/pipebench/work/kiln-1.yaml
//	go tool pprof -top -nodecount 40 cpu.pprof
//
// --trace writes an execution trace (go tool trace) to see whether both
// cores are busy through the run.
//
// It prints the run's per-stage statistics (rows, batches, time inside
// each stage's calls, summed over workers).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kilnai/kiln/internal/pipeline"

	// The components pipebench's spec uses.
	_ "github.com/kilnai/kiln/internal/connectors/file"
	_ "github.com/kilnai/kiln/internal/connectors/transform"
)

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	cpu := flag.String("cpuprofile", "cpu.pprof", "CPU profile to write")
	mem := flag.String("memprofile", "", "heap profile (allocations) to write at the end")
	traceOut := flag.String("trace", "", "execution trace to write (go tool trace): which goroutines ran when, GC, idle cores")
	dataDir := flag.String("data-dir", "", "engine data directory (default: a temporary one)")
	flag.Parse()
	if flag.NArg() != 1 {
		return errors.New("usage: profile [flags] SPEC.yaml")
	}
	spec, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		return err
	}
	plan, err := pipeline.Parse(flag.Arg(0), spec, os.LookupEnv)
	if err != nil {
		return err
	}
	if *dataDir == "" {
		if *dataDir, err = os.MkdirTemp("", "pipebench-profile-"); err != nil {
			return err
		}
		defer os.RemoveAll(*dataDir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	f, err := os.Create(*cpu)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	if *traceOut != "" {
		tf, err := os.Create(*traceOut)
		if err != nil {
			return err
		}
		defer tf.Close()
		if err := trace.Start(tf); err != nil {
			return err
		}
	}
	eng := &pipeline.Engine{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DataDir: *dataDir}
	start := time.Now()
	rec, runErr := eng.Run(ctx, plan, pipeline.RunOptions{NoCache: true})
	wall := time.Since(start)
	pprof.StopCPUProfile()
	if *traceOut != "" {
		trace.Stop()
	}
	if *mem != "" {
		mf, err := os.Create(*mem)
		if err != nil {
			return err
		}
		runtime.GC()
		err = pprof.Lookup("allocs").WriteTo(mf, 0)
		if cerr := mf.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if rec != nil {
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "stage\trows in\trows out\tbatches\ttime in calls\t")
		for _, s := range rec.Stages {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t\n", s.Stage, s.RowsIn, s.RowsOut, s.Batches, s.Duration.Round(time.Millisecond))
		}
		tw.Flush()
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		fmt.Printf("run %s in %s wall, %s CPU, peak RSS %d MiB (GOMAXPROCS %d)\n", rec.Status, wall.Round(time.Millisecond),
			cpu.Round(time.Millisecond), ru.Maxrss>>10, runtime.GOMAXPROCS(0))
	}
	return runErr
}
