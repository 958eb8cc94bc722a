import pytest
import torch

from nemo_ext.telemetry.memory import cuda_memory, module_footprint, process_peak_rss_bytes, process_rss_bytes


def test_module_footprint_is_exact():
    module = torch.nn.Sequential(torch.nn.Linear(10, 3), torch.nn.BatchNorm1d(3)).to(torch.float16)
    footprint = module_footprint(module)
    params = 10 * 3 + 3 + 3 + 3  # linear weight + bias, batchnorm weight + bias
    buffers_bytes = 3 * 2 + 3 * 2 + 8  # running mean/var in fp16, num_batches_tracked int64
    assert footprint.param_count == params
    assert footprint.param_bytes == params * 2
    assert footprint.buffer_bytes == buffers_bytes
    assert footprint.weights_bytes == params * 2 + buffers_bytes
    assert footprint.dtypes == ("float16",)
    assert footprint.device == "cpu"
    assert footprint.bytes_per_param == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="about CPU-only processes")
def test_cpu_process_has_no_cuda_figures():
    assert cuda_memory() is None


def test_process_rss_is_positive_and_bounded_by_peak():
    assert 0 < process_rss_bytes() <= process_peak_rss_bytes() * 1.05
