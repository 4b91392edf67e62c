import pytest
import torch

from wsgraph.runtime import derived_seed, resolve_device, strided_seed

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize("flag", ["cpu", "cpu:0", torch.device("cpu")])
def test_cpu(flag):
    assert resolve_device(flag).type == "cpu"


@pytest.mark.parametrize("flag", ["auto", None])
def test_auto_takes_cuda_when_there_is_one(flag):
    assert resolve_device(flag) == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("flag", ["tpu", "meta", "gpu", "cuda:x", ""])
def test_unknown_devices_are_named(flag):
    with pytest.raises(ValueError, match=rf"^--device {flag}: unknown device; expected auto, cpu, cuda") as error:
        resolve_device(flag)
    assert len(str(error.value).splitlines()) == 1


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_without_mps():
    with pytest.raises(ValueError, match=r"^--device mps: MPS is not available on this machine$"):
        resolve_device("mps")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("flag", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda(flag):
    with pytest.raises(ValueError, match=rf"^--device {flag}: CUDA is not available on this machine$"):
        resolve_device(flag, local_rank=0)


@pytest.mark.skipif(NO_CUDA, reason="needs CUDA")
def test_cuda_index_from_flag_or_local_rank():
    last = torch.cuda.device_count() - 1
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda", local_rank=last) == torch.device("cuda", last)
    assert resolve_device("auto", local_rank=last) == torch.device("cuda", last)
    assert resolve_device(f"cuda:{last}", local_rank=0) == torch.device("cuda", last)
    missing = last + 1
    with pytest.raises(ValueError, match=rf"^--device cuda:{missing}: no CUDA device {missing} \(this machine has"):
        resolve_device(f"cuda:{missing}")
    with pytest.raises(ValueError, match=rf"^--device cuda: no CUDA device {missing} \(this machine has"):
        resolve_device("cuda", local_rank=missing)


def test_derived_seed_is_the_documented_chain_of_strided_seeds():
    assert derived_seed(7) == 7
    assert derived_seed(7, 2) == strided_seed(7, 3) == 7 * 1_000_003 + 3
    assert derived_seed(7, 2, 5) == strided_seed(strided_seed(7, 3), 6)
    assert derived_seed(-1, 0) == (-1_000_003 + 1) % 2**63
    assert len({derived_seed(0, stream, epoch) for stream in range(3) for epoch in range(50)}) == 150
    assert 0 <= derived_seed(2**62, 1, 2, 3) < 2**63


def test_strided_seed_is_not_reduced():
    # Fitted image-INR datasets were shuffled with these exact seeds.
    assert strided_seed(3, 10) == 3_000_019
    assert strided_seed(-2, 4) == -2_000_002
