package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds returns the user+system CPU time of pid so far, in seconds.
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	end := bytes.LastIndexByte(raw, ')')
	if end < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(raw[end+1:]))
	// fields[0] is field 3 (state); utime is field 14, stime field 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return (utime + stime) / clockTicks, nil
}

// rssBytes returns VmRSS of pid.
func rssBytes(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fs := strings.Fields(v)
			if len(fs) == 0 {
				break
			}
			kb, err := strconv.ParseFloat(fs[0], 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// findPid returns the pid of the process whose command line starts with a
// binary named exe and contains marker (the control plane's own folders, so
// that other test clusters on the machine are not mistaken for ours).
func findPid(exe, marker string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if filepath.Base(args[0]) != exe {
			continue
		}
		if strings.Contains(string(raw), marker) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no %s process with %q on its command line", exe, marker)
}

// machineCPU returns the busy and total jiffies of all CPUs (/proc/stat).
func machineCPU() (busy, total float64) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	fs := strings.Fields(line)
	if len(fs) < 8 || fs[0] != "cpu" {
		return 0, 0
	}
	for i, f := range fs[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		if i >= 8 { // guest and guest_nice are already in user and nice
			break
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// cpuMeter measures the CPU used by a set of processes and by the whole
// machine between start and stop.
type cpuMeter struct {
	pids       map[string]int
	start      map[string]float64
	t0         time.Time
	busy0, tot float64
}

func startCPU(pids map[string]int) *cpuMeter {
	m := &cpuMeter{pids: pids, start: map[string]float64{}, t0: time.Now()}
	for name, pid := range pids {
		if s, err := cpuSeconds(pid); err == nil {
			m.start[name] = s
		}
	}
	m.busy0, m.tot = machineCPU()
	return m
}

// cpuUse is the CPU one process used over a window.
type cpuUse struct {
	Seconds float64 `json:"cpu_seconds"`
	Cores   float64 `json:"cores"` // seconds per wall second
}

// stop returns per process the CPU seconds and the average cores used, and
// the machine's busy fraction (0-1) over the window.
func (m *cpuMeter) stop() (map[string]cpuUse, float64) {
	wall := time.Since(m.t0).Seconds()
	out := map[string]cpuUse{}
	for name, pid := range m.pids {
		s, err := cpuSeconds(pid)
		s0, ok := m.start[name]
		if err != nil || !ok {
			continue
		}
		out[name] = cpuUse{Seconds: round(s-s0, 2), Cores: round((s-s0)/wall, 3)}
	}
	busy, total := machineCPU()
	frac := 0.0
	if total > m.tot {
		frac = (busy - m.busy0) / (total - m.tot)
	}
	return out, round(frac, 3)
}

// machineInfo describes the machine a run happened on.
type machineInfo struct {
	Cores       int    `json:"cores"`
	MemoryBytes int64  `json:"memory_bytes"`
	CPUModel    string `json:"cpu_model"`
	Kernel      string `json:"kernel"`
	LoadAvg     string `json:"loadavg_at_start"`
	LoadAvgEnd  string `json:"loadavg_at_end,omitempty"`
	OS          string `json:"os"`
}

func readMachine() machineInfo {
	m := machineInfo{Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				fs := strings.Fields(v)
				if len(fs) > 0 {
					kb, _ := strconv.ParseInt(fs[0], 10, 64)
					m.MemoryBytes = kb * 1024
				}
			}
		}
	}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(raw))
	}
	m.LoadAvg = loadAvg()
	return m
}

func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	fs := strings.Fields(string(raw))
	if len(fs) < 3 {
		return ""
	}
	return strings.Join(fs[:3], " ")
}

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	if v < 0 {
		return -float64(int64(-v*p+0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}
