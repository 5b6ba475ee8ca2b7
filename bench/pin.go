package bench

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// cpuSplit gives the load generator CPUs of its own, as it would have on a
// client machine: on a host whose clients share its CPUs, every request the
// generator sends, and every refusal it reads, takes CPU from the services
// it measures, and an overload run then measures the generator as much as
// the services. The services and Consul run on the rest.
type cpuSplit struct {
	services, gen unix.CPUSet
	// desc names the split for the report.
	desc string
}

// newCPUSplit takes the last of the CPUs this process may run on for the
// generator and leaves the others to the services. It fails on a host with
// one CPU, where there is nothing to split.
func newCPUSplit() (*cpuSplit, error) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return nil, fmt.Errorf("reading this process's CPUs: %w", err)
	}
	var cpus []int
	for c := 0; c < len(all)*64 && len(cpus) < all.Count(); c++ {
		if all.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		return nil, fmt.Errorf("-pin needs 2 CPUs or more, this process has %d", len(cpus))
	}
	s := &cpuSplit{}
	for _, c := range cpus[:len(cpus)-1] {
		s.services.Set(c)
	}
	gen := cpus[len(cpus)-1]
	s.gen.Set(gen)
	s.desc = fmt.Sprintf("services and Consul on CPU %s, the load generator on CPU %d", list(cpus[:len(cpus)-1]), gen)
	return s, nil
}

// list formats CPU numbers as "0,1,2".
func list(cpus []int) string {
	b := []byte{}
	for i, c := range cpus {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(c), 10)
	}
	return string(b)
}

// forServices moves this process to the services' CPUs, so that every
// process it starts from now on inherits them (the mask survives fork and
// exec, and a Go program sizes GOMAXPROCS from it).
func (s *cpuSplit) forServices() error { return pinSelf(&s.services) }

// forGenerator moves this process to the generator's CPUs, once the
// services have started.
func (s *cpuSplit) forGenerator() error {
	if err := pinSelf(&s.gen); err != nil {
		return err
	}
	runtime.GOMAXPROCS(s.gen.Count())
	return nil
}

// pinSelf sets the CPU mask of every thread of this process: the mask is
// per thread, and a thread takes its creator's. Twice, for a thread created
// while the first pass ran.
func pinSelf(set *unix.CPUSet) error {
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			// A thread that exited meanwhile is no error.
			if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pinning thread %d: %w", tid, err)
			}
		}
	}
	return nil
}
