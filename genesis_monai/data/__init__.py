from genesis_monai.data.demo import demo_data_dir, demo_split, make_demo_volume, write_demo_dataset  # noqa: F401
from genesis_monai.data.cube_dataset import CubeDataset, find_cube_files, load_cube_datalist  # noqa: F401
from genesis_monai.data.cubes import extract_cubes  # noqa: F401
from genesis_monai.data.extraction_options import ExtractionOptions  # noqa: F401
from genesis_monai.data.extract import extract_cubes_from_folder  # noqa: F401
from genesis_monai.data.skip_unreadable import SkipUnreadable  # noqa: F401
from genesis_monai.data.pattern_files import PatternDataset, find_pattern_files, write_pattern_files  # noqa: F401
